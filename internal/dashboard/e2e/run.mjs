#!/usr/bin/env node
// Runs the dashboard's browser tests: `node internal/dashboard/e2e/run.mjs`
// (or `npm test` in this directory, or `go test ./internal/dashboard/`).
//
// It brings what the tests need and the project does not ship: Debian's
// Chromium (playwright-core drives the system browser; Playwright's own
// browser download cannot work on machines that reach only the package
// registries) and node_modules from package-lock.json. Then it runs
// dashboard.test.mjs with node:test. Screenshots and logs land in
// test-artifacts/dashboard/ at the top of the repo.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const chromiumPath = process.env.HAL0_CHROMIUM || '/usr/bin/chromium';

function sh(cmd, args, opts = {}) {
  console.log(`+ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) {
    console.error(`${cmd}: ${r.error.message}`);
    process.exit(1);
  }
  if (r.status !== 0) {
    console.error(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}`);
    process.exit(1);
  }
}

if (!existsSync(chromiumPath)) {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    console.error(`${chromiumPath} is missing: install Debian's chromium as root (apt-get install chromium), or set HAL0_CHROMIUM.`);
    process.exit(1);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  sh('apt-get', ['update', '-qq'], { env });
  sh('apt-get', ['install', '-y', '-qq', 'chromium'], { env });
}

if (!existsSync(join(here, 'node_modules', 'playwright-core', 'package.json'))) {
  sh('npm', ['ci', '--no-audit', '--no-fund'], { cwd: here });
}

const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', '--test-concurrency=1', 'dashboard.test.mjs'], {
  cwd: here,
  stdio: 'inherit',
  env: { ...process.env, HAL0_CHROMIUM: chromiumPath },
});
process.exit(r.status ?? 1);
