// The system under test, started for real: binaries built from this tree
// with go build, the test hub, hal0-apid on 127.0.0.1 and a unix socket
// (pulls run as hal0-pull child processes, --runner=process), and the
// hal0-slotd stand-in. Nothing leaves loopback.

import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../../..');

/** The API token hal0-apid is started with; the tests type it into the page. */
export const TOKEN = 'dashboard-e2e-token';

/** The slot the tests swap, and the model it serves at the start. */
export const SLOT = 'main';
export const BASE_MODEL = 'e2e/base-GGUF:Q4_K_M';

/** The NPU model the tests pull, from FastFlowLM's catalog: flm is
 * internal/flm/flmtest's stand-in (no NPU here), run as the host flm. */
export const NPU_MODEL = 'qwen3:4b';
export const NPU_BYTES = 8 << 20;

const run = promisify(execFile);

// Every child still running when Node exits (a failed assertion, Ctrl-C)
// is killed, so no hal0-apid or hub outlives the suite.
const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/** A child process whose stdout lines can be awaited. */
class Proc {
  constructor(name, cmd, args, env, logDir) {
    this.name = name;
    this.log = createWriteStream(join(logDir, `${name}.log`));
    this.child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(this.child);
    this.exited = once(this.child, 'exit').then(([code, sig]) => {
      children.delete(this.child);
      return { code, sig };
    });
    this.lines = [];
    this.waiters = [];
    this.onStdout = null; // called with each stdout line
    const onLine = (stream) => (line) => {
      this.log.write(`${stream}: ${line}\n`);
      if (stream === 'out' && this.onStdout) this.onStdout(line);
      this.lines.push(line);
      for (const w of [...this.waiters]) {
        const m = w.re.exec(line);
        if (m) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    };
    createInterface({ input: this.child.stdout }).on('line', onLine('out'));
    createInterface({ input: this.child.stderr }).on('line', onLine('err'));
    this.exited.then(({ code, sig }) => {
      for (const w of this.waiters) w.reject(new Error(`${name} exited (${code ?? sig}) before printing ${w.re}`));
      this.waiters = [];
    });
  }

  /** waitFor resolves with the match of the first output line (stdout or
   * stderr, past or future) that matches re. */
  waitFor(re, timeoutMs = 30000) {
    for (const l of this.lines) {
      const m = re.exec(l);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolvePromise, reject) => {
      const w = { re, resolve: resolvePromise, reject };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(new Error(`${this.name}: nothing matched ${re} within ${timeoutMs} ms; its log: ${this.log.path}`));
        }
      }, timeoutMs).unref();
    });
  }

  async stop() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10000);
    await this.exited;
    clearTimeout(t);
  }
}

/**
 * SlotdStandIn drives e2ehelper's hal0-slotd stand-in: one command per
 * line on its stdin, one JSON answer per line on its stdout.
 */
class SlotdStandIn {
  constructor(proc) {
    this.proc = proc;
    this.queue = [];
    proc.onStdout = (line) => {
      const next = this.queue.shift();
      if (!next) return;
      let v;
      try {
        v = JSON.parse(line);
      } catch (err) {
        next.reject(err);
        return;
      }
      if (v.error) next.reject(new Error(`slotd stand-in: ${v.error}`));
      else next.resolve(v.status);
    };
  }

  send(cmd) {
    return new Promise((resolvePromise, reject) => {
      this.queue.push({ resolve: resolvePromise, reject });
      this.proc.child.stdin.write(`${cmd}\n`);
    });
  }

  /** ready writes state.json: the slot serves model. */
  ready(model) {
    return this.send(`ready ${model}`);
  }

  /** take waits for the request hal0-apid recorded and applies it. */
  take() {
    return this.send('take');
  }

  /** event applies what hal0-slotd would observe (unit-gone, ...). */
  event(kind) {
    return this.send(`event ${kind}`);
  }
}

export class Stack {
  static async start() {
    const s = new Stack();
    try {
      await s.#start();
    } catch (err) {
      await s.stop({ keepLogs: true });
      throw err;
    }
    return s;
  }

  async #start() {
    this.tmp = await mkdtemp(join(tmpdir(), 'hal0-dash-'));
    this.logDir = join(this.tmp, 'logs');
    this.bin = join(this.tmp, 'bin');
    this.home = join(this.tmp, 'home');
    await mkdir(this.logDir, { recursive: true });
    this.procs = [];

    // Built from this tree, as the apid tests do: the suite tests the
    // code beside it, not whatever hal0-apid is installed.
    await run('go', ['build', '-o', `${this.bin}/`, 'github.com/hal0ai/hal0/hal0', 'github.com/hal0ai/hal0/hal0-apid', 'github.com/hal0ai/hal0/hal0-pull', './internal/dashboard/e2e/e2ehelper', './internal/flm/flmtest/standin'], {
      cwd: repoRoot,
      maxBuffer: 16 << 20,
    }).catch((err) => {
      throw new Error(`go build failed:\n${err.stderr || err.message}`);
    });

    const hub = this.#spawn('hub', join(this.bin, 'e2ehelper'), ['hub'], { PATH: process.env.PATH });
    this.hubURL = (await hub.waitFor(/^HUB_URL=(\S+)$/))[1];

    // Two slots: the one the tests swap, and an idle NPU slot so the view
    // shows more than one card.
    const slotDir = join(this.home, 'etc', 'hal0', 'slots');
    await mkdir(slotDir, { recursive: true });
    await writeFile(join(slotDir, `${SLOT}.toml`), `[slot]\nname = "${SLOT}"\nport = 18080\nbackend = "llama-server"\nrole = "primary"\n\n[model]\ndefault = "${BASE_MODEL}"\n`);
    await writeFile(join(slotDir, 'npu.toml'), '[slot]\nname = "npu"\nport = 18081\nbackend = "flm"\nrole = "npu"\n\n[model]\ndefault = "qwen3:4b"\n');

    // FastFlowLM's catalog for the stand-in flm (model_list.json, as flm
    // reads it from FLM_CONFIG_PATH).
    const flmCatalog = join(this.tmp, 'flm', 'model_list.json');
    await mkdir(dirname(flmCatalog), { recursive: true });
    const entry = (repo, size, label) => ({
      name: repo, url: `https://huggingface.co/FastFlowLM/${repo}`, size, files: ['config.json', 'model.q4nx', 'tokenizer.json'],
      label, footprint: 2.5, default_context_length: 32768, details: { format: 'NPU2' },
    });
    await writeFile(flmCatalog, JSON.stringify({
      model_path: 'models',
      models: {
        qwen3: { '4b': entry('Qwen3-4B-NPU2', NPU_BYTES, ['reasoning', 'tool-calling']) },
        'embed-gemma': { '300m': entry('embeddinggemma-300m-NPU2', 1 << 20, ['embeddings']) },
      },
    }));

    // A clean environment: an HF_TOKEN or HAL0_* of the machine running
    // the suite would change what the hub answers or where files go.
    this.journal = Boolean(process.env.HAL0_E2E_JOURNAL_DIR);
    this.env = {
      PATH: process.env.PATH,
      HOME: this.home,
      HAL0_HOME: this.home,
      HF_ENDPOINT: this.hubURL,
      HAL0_API_TOKEN: TOKEN,
      // Slot logs come from the journal of the private systemd the Go test
      // booted, when it could boot one.
      ...(process.env.HAL0_E2E_JOURNAL_DIR ? { HAL0_JOURNAL_DIR: process.env.HAL0_E2E_JOURNAL_DIR } : {}),
      HAL0_DISK_RESERVE: '0',
      // Small ranges: more progress events per pull, and the stall repo's
      // fault (after 512 KiB of every response) catches each of them.
      HAL0_PULL_CHUNK_SIZE: '1MiB',
      HAL0_PULL_CONNECTIONS: '4',
      // The stalled pull must stay stalled until the page cancels it.
      HAL0_STALL_TIMEOUT: '10m',
      // flm: the stand-in as the host flm, its cache under HAL0_HOME.
      HAL0_FLM_RUNTIME: 'host',
      HAL0_FLM_PATH: join(this.bin, 'standin'),
      FLM_CONFIG_PATH: flmCatalog,
      FLM_STANDIN_RATE: String(8 << 20),
    };
    // The catalog: the real `hal0 catalog index` of the hub's orgs e2e
    // (certified) and lab, configured as an administrator would.
    const confDir = join(this.home, 'etc', 'hal0');
    await writeFile(join(confDir, 'hal0.toml'), '[catalog]\ncertified_orgs = ["e2e"]\n\n[[catalog.source]]\norgs = ["e2e", "lab"]\n');
    this.catalogFile = join(this.home, 'var', 'lib', 'hal0', 'catalog', 'catalog.json');
    const indexed = await run(join(this.bin, 'hal0'), ['catalog', 'index'], { env: this.env }).catch((err) => {
      throw new Error(`hal0 catalog index failed:\n${err.stderr || err.message}`);
    });
    this.indexOutput = indexed.stdout.trim();

    const sock = join(this.home, 'run', 'hal0', 'api.sock');
    const apid = this.#spawn('hal0-apid', join(this.bin, 'hal0-apid'), ['--runner=process', `--listen=tcp:127.0.0.1:0,unix:${sock}`], this.env);
    // Port 0, then the port apid reports: no race for a free port.
    const port = (await apid.waitFor(/serving on .*tcp:127\.0\.0\.1:(\d+)/))[1];
    this.apiURL = `http://127.0.0.1:${port}`;
    const health = await fetch(`${this.apiURL}/api/health`);
    if (!health.ok) throw new Error(`hal0-apid health: ${health.status}`);

    // Once apiserver mounts the dashboard at /, the suite tests that
    // mount directly. Until then e2ehelper's front serves the page and
    // passes /api/ through to the same hal0-apid.
    const root = await fetch(`${this.apiURL}/`);
    const body = await root.text();
    if (root.ok && body.includes('name="hal0-dashboard"')) {
      this.baseURL = this.apiURL;
      this.mode = 'hal0-apid serves the dashboard';
    } else {
      const front = this.#spawn('front', join(this.bin, 'e2ehelper'), ['front', `--api=${this.apiURL}`], { PATH: process.env.PATH });
      this.baseURL = (await front.waitFor(/^FRONT_URL=(\S+)$/))[1];
      this.mode = 'e2ehelper front (dashboard.Handler + a proxy of /api/ to hal0-apid)';
    }

    const slotd = this.#spawn('slotd-standin', join(this.bin, 'e2ehelper'), ['slotd', `--slot=${SLOT}`], this.env);
    this.slotd = new SlotdStandIn(slotd);
    await this.slotd.ready(BASE_MODEL);
  }

  #spawn(name, cmd, args, env) {
    const p = new Proc(name, cmd, args, env, this.logDir);
    this.procs.push(p);
    return p;
  }

  /** api calls hal0-apid over TCP with the token, as a script would. */
  async api(method, path, body) {
    const res = await fetch(`${this.apiURL}${path}`, {
      method,
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await res.json();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(data)}`);
    return data;
  }

  /** stop cancels pulls still running (a test that failed half-way),
   * stops every process and removes the scratch directory; the logs are
   * copied next to the screenshots first. */
  async stop({ keepLogs = false, artifacts } = {}) {
    if (this.apiURL) {
      try {
        for (const p of await this.api('GET', '/api/pulls')) {
          if (!['completed', 'failed', 'cancelled'].includes(p.state)) {
            await this.api('POST', `/api/models/${encodeURIComponent(p.model_id)}/pull/cancel`);
          }
        }
      } catch {
        /* apid already gone: nothing to cancel through it */
      }
    }
    for (const p of [...(this.procs || [])].reverse()) await p.stop();
    for (const p of this.procs || []) p.log.end();
    if (!this.tmp) return;
    if (artifacts) {
      await cp(this.logDir, join(artifacts, 'logs'), { recursive: true }).catch(() => {});
    }
    if (keepLogs) {
      console.error(`logs kept in ${this.logDir}`);
      for (const p of this.procs || []) {
        const text = await readFile(p.log.path, 'utf8').catch(() => '');
        console.error(`--- ${p.name} (last lines)\n${text.split('\n').slice(-30).join('\n')}`);
      }
      return;
    }
    await rm(this.tmp, { recursive: true, force: true });
  }
}
