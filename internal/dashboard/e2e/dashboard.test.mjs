// Browser tests of the hal0 dashboard, run by run.mjs with node:test.
//
// Everything is real: hal0-apid and hal0-pull built from this tree, the
// test hub on 127.0.0.1, Debian's Chromium driven by playwright-core. The
// one stand-in is for hal0-slotd, which needs systemd over D-Bus: the
// tests order e2ehelper's stand-in to apply each request and observation
// with the real slot state machine (see e2ehelper/main.go), and watch each
// state arrive on the page through hal0-apid's event stream.
//
// The tests run in order and share one hal0-apid: the model pulled first
// is the one the slot is swapped to later.

import assert from 'node:assert/strict';
import { mkdir, rename, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { BASE_MODEL, NPU_BYTES, NPU_MODEL, SLOT, Stack, TOKEN, repoRoot } from './stack.mjs';

const artifacts = process.env.HAL0_ARTIFACTS || resolve(repoRoot, 'test-artifacts', 'dashboard');
const executablePath = process.env.HAL0_CHROMIUM || '/usr/bin/chromium';

const TINY = 'e2e/tiny-GGUF:Q4_K_M';
const STALL = 'e2e/stall-GGUF:Q4_K_M';
const GATED = 'e2e/gated-GGUF';
const MiB = 1 << 20;
const TINY_BYTES = 3 * 4 * MiB; // e2ehelper: three 4 MiB shards

let stack;
let browser;
let page; // the desktop page the tests share (and its session token)
const problems = []; // console errors, page errors and foreign requests, per page

before(async () => {
  await mkdir(artifacts, { recursive: true });
  stack = await Stack.start();
  console.log(`# page served by ${stack.mode} at ${stack.baseURL}; hal0-apid at ${stack.apiURL}; hub at ${stack.hubURL}`);
  console.log(`# hal0 catalog index: ${stack.indexOutput}`);
  browser = await chromium.launch({
    executablePath,
    headless: true,
    chromiumSandbox: false, // root on CI: Chromium's sandbox refuses to start as root
    // Without these, Chromium keeps trying Google's hosts, which this
    // machine's closed network refuses.
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await newPage({ width: 1280, height: 900 });
});

after(async () => {
  await browser?.close();
  await stack?.stop({ artifacts });
});

/** newPage opens a page in a fresh context (its own sessionStorage) that
 * records every request, console error and page error. */
async function newPage(viewport, extra = {}) {
  const ctx = await browser.newContext({ viewport, ...extra });
  const p = await ctx.newPage();
  p.setDefaultTimeout(20000);
  const origin = new URL(stack.baseURL).origin;
  p.on('request', (req) => {
    const u = new URL(req.url());
    // data: and blob: URLs never leave the browser.
    if (u.protocol !== 'data:' && u.protocol !== 'blob:' && u.origin !== origin) problems.push(`request beyond hal0-apid: ${req.url()}`);
  });
  p.on('console', (msg) => {
    // A 401 is the answer the page meets before the token is entered, a
    // 409 the refusal the removal test asks for; Chromium logs every
    // failed fetch as a console error.
    // Without a journal (not root), the Logs panel's 503 is the answer
    // its test expects too.
    const expected = stack.journal ? /status of 40[19]/ : /status of (40[19]|503)/;
    if (msg.type() === 'error' && !expected.test(msg.text())) problems.push(`console: ${msg.text()}`);
  });
  p.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  return p;
}

async function shot(p, name) {
  await p.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** view follows a navigation link, as a person would. */
async function view(p, name) {
  await p.getByRole('navigation', { name: 'Views' }).getByRole('link', { name, exact: true }).click();
  await p.locator(`#view-${name.toLowerCase()}`).waitFor({ state: 'visible' });
}

const stateOf = (scope, state) => scope.locator(`[data-role=state][data-state="${state}"]`);

/** tabTo presses Tab until the element matching sel has the focus. */
async function tabTo(p, sel, max = 40) {
  for (let i = 0; i < max; i++) {
    await p.keyboard.press('Tab');
    if (await p.evaluate((s) => document.activeElement?.matches(s) ?? false, sel)) return;
  }
  throw new Error(`${sel} not reached in ${max} presses of Tab`);
}

test('pull by reference: the 401 asks for the token, the bar reaches 100% and the model is listed', async () => {
  await page.goto(`${stack.baseURL}/#/pull`);
  const pv = page.locator('#view-pull');
  await pv.getByLabel('Model reference').fill('e2e/tiny-GGUF');
  await pv.getByLabel('Quant').selectOption('Q4_K_M');
  await shot(page, 'pull');

  // Record every value the bar takes, to check it only moves forward.
  await page.evaluate(() => {
    window.__bar = [];
    new MutationObserver(() => {
      const bar = document.querySelector('#pull-result progress');
      if (bar && bar.hasAttribute('value') && window.__bar.at(-1) !== bar.value) window.__bar.push(bar.value);
    }).observe(document.querySelector('#pull-result'), { subtree: true, childList: true, attributes: true });
  });
  await pv.getByRole('button', { name: 'Pull', exact: true }).click();

  // No token yet: hal0-apid answers 401 and the page asks for it.
  const dialog = page.getByRole('dialog', { name: 'API token' });
  await dialog.waitFor();
  assert.match(await dialog.locator('#token-reason').textContent(), /bearer token/);
  await shot(page, 'token-prompt');
  await dialog.getByLabel('Token').fill(TOKEN);
  await dialog.getByRole('button', { name: 'Save token' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await page.locator('#token-state').textContent(), 'set');

  // The same click goes on with the token: the pull starts and its card
  // follows it to the end.
  const card = pv.locator(`article.pull-card[data-model="${TINY}"]`);
  await stateOf(card, 'completed').waitFor();
  assert.equal(await card.locator('progress').evaluate((b) => b.value), 100);
  const stats = await card.locator('[data-role=stats]').textContent();
  assert.match(stats, /^12\.0 MiB of 12\.0 MiB · 100%/);
  const seen = await page.evaluate(() => window.__bar);
  assert.equal(seen.at(-1), 100, `bar values ${seen}`);
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), `the bar went backwards: ${seen}`);
  await shot(page, 'pull-completed');

  // The job and the registry agree with the page.
  const st = await stack.api('GET', `/api/models/${encodeURIComponent(TINY)}/pull/status`);
  assert.equal(st.state, 'completed');
  assert.equal(st.bytes_done, TINY_BYTES);

  // The installed list shows it, with the commit the pull pinned.
  await view(page, 'Models');
  const row = page.locator(`#models-body tr[data-model="${TINY}"]`);
  await row.waitFor();
  const [m] = (await stack.api('GET', '/api/models')).filter((x) => x.id === TINY);
  assert.ok(m, 'the registry has the model');
  assert.equal(await row.locator('td[data-label=Size]').textContent(), '12.0 MiB');
  assert.match(await row.locator('td[data-label=Source]').textContent(), /^hf \(127\.0\.0\.1:\d+\)$/);
  assert.equal(await row.locator('td[data-label=Commit] code').textContent(), m.commit.slice(0, 12));
  assert.equal(await row.locator('td[data-label=Commit] code').getAttribute('title'), m.commit);
  assert.ok(await row.getByRole('button', { name: `Pull ${TINY}` }).isVisible());
  // The completed pull stays in the Pulls list of this page.
  await stateOf(page.locator(`#pulls-list article[data-model="${TINY}"]`), 'completed').waitFor();
  await shot(page, 'models');
});

test('NPU models: the FLM catalog lists what is not installed, and Pull installs it for the NPU', async () => {
  await view(page, 'Models');
  const row = page.locator(`#npu-body tr[data-model="${NPU_MODEL}"]`);
  await row.waitFor();
  assert.equal(await row.locator('td[data-label=Size]').textContent(), '8.0 MiB');
  assert.equal(await row.locator('td[data-label=Capabilities]').textContent(), 'chat');
  assert.equal(await page.locator('#npu-body tr[data-model="embed-gemma:300m"] td[data-label=Capabilities]').textContent(), 'embed');
  await shot(page, 'models-npu');

  await row.getByRole('button', { name: `Pull ${NPU_MODEL}` }).click();
  const card = page.locator(`#pulls-list article[data-model="${NPU_MODEL}"]`);
  await stateOf(card, 'completed').waitFor();
  assert.match(await card.locator('[data-role=stats]').textContent(), /^8\.0 MiB of 8\.0 MiB · 100%/);

  // Installed for the NPU: the row moves to the Installed table.
  const inst = page.locator(`#models-body tr[data-model="${NPU_MODEL}"]`);
  await inst.waitFor();
  assert.equal(await inst.locator('td[data-label=Backends]').textContent(), 'npu');
  assert.equal(await inst.locator('td[data-label=Source]').textContent(), 'flm');
  assert.ok(await inst.getByRole('button', { name: `Pull ${NPU_MODEL}` }).isVisible(), 'NPU rows carry pullable = true');
  await row.waitFor({ state: 'detached' });
  const [m] = (await stack.api('GET', '/api/models')).filter((x) => x.id === NPU_MODEL);
  assert.deepEqual(m.backends, ['npu']);
  assert.equal(m.metadata.runtime, 'flm');
  // The stand-in splits the catalog size over the weights; config.json
  // comes on top.
  assert.equal(m.size_bytes, NPU_BYTES + m.files.find((f) => f.path === 'config.json').size);
  await shot(page, 'models-npu-installed');
});

test('a second pull, held by a hub stall, shows live progress and is cancelled from the page', async () => {
  await view(page, 'Pull');
  const pv = page.locator('#view-pull');
  // The hf:// form of a reference, with the quant in the URI.
  await pv.getByLabel('Model reference').fill(`hf://e2e/stall-GGUF?quant=Q4_K_M`);
  await pv.getByLabel('Quant').selectOption('');
  await pv.getByRole('button', { name: 'Pull', exact: true }).click();

  const card = pv.locator(`article.pull-card[data-model="${STALL}"]`);
  await card.waitFor();
  // Bytes arrive until every range hits the stall; the bar shows them.
  await page.waitForFunction((sel) => {
    const b = document.querySelector(sel);
    return b && b.hasAttribute('value') && b.value > 0;
  }, `#view-pull article[data-model="${STALL}"] progress`);
  await stateOf(card, 'running').waitFor();
  const stats = await card.locator('[data-role=stats]').textContent();
  assert.match(stats, /^[\d.]+ (B|KiB|MiB) of 12\.0 MiB · [\d.]+% · [\d.]+ (B|KiB|MiB)\/s · ETA /, stats);
  // The Models view lists the same pull, live, with its own Cancel.
  const listed = page.locator(`#pulls-list article[data-model="${STALL}"]`);
  assert.equal(await listed.count(), 1);
  await shot(page, 'pull-running');

  await card.getByRole('button', { name: `Cancel the pull of ${STALL}` }).click();
  await stateOf(card, 'cancelled').waitFor();
  assert.equal(await card.getByRole('button', { name: `Cancel the pull of ${STALL}` }).count(), 0, 'no Cancel on a cancelled pull');
  assert.ok(await card.getByRole('button', { name: `Pull ${STALL} again` }).isVisible());
  const st = await stack.api('GET', `/api/models/${encodeURIComponent(STALL)}/pull/status`);
  assert.equal(st.state, 'cancelled');
  assert.ok(st.bytes_done > 0 && st.bytes_done < st.bytes_total, `partial data kept: ${st.bytes_done}/${st.bytes_total}`);
  await shot(page, 'pull-cancelled');
});

test('keyboard only: Tab to Pull and press Enter; a gated model links to its license', async () => {
  // A fresh load (a hash change alone would not reload), so the focus
  // starts at the top of the document; the token stays in sessionStorage.
  await page.goto(`${stack.baseURL}/#/pull`);
  await page.reload();
  await page.locator('#view-pull').waitFor({ state: 'visible' });
  await tabTo(page, '#pull-ref');
  await page.keyboard.type(GATED);
  await tabTo(page, '#pull-submit');
  // The focused button shows where the focus is.
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'the focused Pull button has a visible focus outline');
  await shot(page, 'keyboard-focus');
  await page.keyboard.press('Enter');

  const card = page.locator(`#view-pull article.pull-card[data-model="${GATED}"]`);
  await stateOf(card, 'failed').waitFor();
  assert.match(await card.locator('[data-role=error-text]').textContent(), /is gated: accept its license at/);
  const link = card.getByRole('link', { name: "Accept the license on the model's page" });
  assert.equal(await link.getAttribute('href'), `${stack.hubURL}/e2e/gated-GGUF`);
  assert.equal(await link.getAttribute('target'), '_blank');
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
  // Screen readers are told how it ended.
  await page.locator('#announcer', { hasText: `Pull of ${GATED}: failed.` }).waitFor();
  await shot(page, 'pull-gated');

  // The Pull button of an installed model, by keyboard too.
  await page.goto(`${stack.baseURL}/#/models`);
  await page.reload();
  await page.locator(`#models-body tr[data-model="${TINY}"]`).waitFor();
  await tabTo(page, `#models-body tr[data-model="${TINY}"] button[data-role=pull]`);
  await page.keyboard.press('Enter');
  const row = page.locator(`#models-body tr[data-model="${TINY}"]`);
  await row.locator('[data-role=row-status]', { hasText: 'pull completed' }).waitFor();
  await stateOf(page.locator(`#pulls-list article[data-model="${TINY}"]`), 'completed').waitFor();
  // The row kept the keyboard focus through the pull's updates.
  assert.ok(await page.evaluate((id) => document.activeElement?.closest('tr')?.dataset.model === id, TINY));
});

test('swap a slot and watch its states change live', async () => {
  await view(page, 'Slots');
  const card = page.locator(`article.slot-card[data-slot="${SLOT}"]`);
  await stateOf(card, 'ready').waitFor();
  assert.equal(await card.locator('[data-role=model]').textContent(), BASE_MODEL);
  assert.equal(await card.locator('[data-role=message]').textContent(), `serving ${BASE_MODEL}`);
  await stateOf(page.locator('article.slot-card[data-slot="npu"]'), 'offline').waitFor();

  // Record every state the card shows from here on.
  await page.evaluate((slot) => {
    const badge = document.querySelector(`article[data-slot="${slot}"] [data-role=state]`);
    window.__states = [badge.dataset.state];
    new MutationObserver(() => {
      if (window.__states.at(-1) !== badge.dataset.state) window.__states.push(badge.dataset.state);
    }).observe(badge, { attributes: true, attributeFilter: ['data-state'] });
  }, SLOT);

  await card.getByLabel('Swap to').selectOption(TINY);
  await shot(page, 'slots');
  await card.getByRole('button', { name: `Swap the model of slot ${SLOT}` }).click();
  // hal0-apid recorded the request; the page says it waits for hal0-slotd.
  await card.locator('[data-role=pending]').waitFor();
  assert.match(await card.locator('[data-role=result]').textContent(), new RegExp(`next state: unloading`));
  await shot(page, 'slots-requested');

  // hal0-slotd's part, one step at a time; each state must reach the page
  // through the event stream before the next is written.
  let st = await stack.slotd.take();
  assert.equal(st.state, 'unloading');
  await stateOf(card, 'unloading').waitFor();
  await card.locator('[data-role=pending]').waitFor({ state: 'hidden' });
  assert.equal(await card.locator('[data-role=target]').textContent(), TINY);

  st = await stack.slotd.event('unit-gone');
  assert.equal(st.state, 'starting', 'the model is installed, so no pull first');
  await stateOf(card, 'starting').waitFor();

  st = await stack.slotd.event('unit-active');
  assert.equal(st.state, 'warming');
  await stateOf(card, 'warming').waitFor();
  await shot(page, 'slots-warming');

  st = await stack.slotd.event('healthy');
  assert.equal(st.state, 'ready');
  await stateOf(card, 'ready').waitFor();
  await card.locator('[data-role=model]', { hasText: TINY }).waitFor();
  assert.equal(await card.locator('[data-role=message]').textContent(), `serving ${TINY}`);

  assert.deepEqual(await page.evaluate(() => window.__states), ['ready', 'unloading', 'starting', 'warming', 'ready']);
  await shot(page, 'slots-swapped');
});

test('slot logs: the Logs panel shows the slot unit\'s journal and follows it', async () => {
  await view(page, 'Slots');
  const card = page.locator(`article.slot-card[data-slot="${SLOT}"]`);
  const lines = card.locator('[data-role=log-lines]');
  await card.locator('[data-role=logs] summary').click();
  if (!stack.journal) {
    // No private systemd here (not root): hal0-apid has no journal to read
    // and the panel says so, with the command to run on the machine.
    await card.locator('[data-role=log-fallback]').waitFor();
    assert.match(await card.locator('[data-role=log-status]').textContent(), /journal/);
    assert.equal(await card.locator('[data-role=logs-command]').textContent(), `hal0 slot logs ${SLOT} -f`);
    return;
  }
  // The Go test started hal0-slot@main.service in a private systemd; it
  // logs "tick N" lines, so a line newer than any shown at opening proves
  // the panel follows the journal.
  const ticks = async () => [...(await lines.textContent()).matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
  await lines.filter({ hasText: /tick \d+/ }).waitFor();
  const first = Math.max(...(await ticks()));
  await card.locator('[data-role=log-status]', { hasText: 'hal0-slot@main.service, following' }).waitFor();
  await page.waitForFunction(
    ([sel, n]) => [...document.querySelector(sel).textContent.matchAll(/tick (\d+)/g)].some((m) => Number(m[1]) > n),
    [`article.slot-card[data-slot="${SLOT}"] [data-role=log-lines]`, first],
  );
  const all = await ticks();
  assert.equal(new Set(all).size, all.length, 'no journal line is shown twice');
  await shot(page, 'slot-logs');
  // Closing the panel stops following.
  await card.locator('[data-role=logs] summary').click();
  assert.equal(await card.locator('[data-role=logs]').evaluate((d) => d.open), false);
});

test('remove a model: refused while a slot serves it, removed after confirming', async () => {
  const SPARE = 'e2e/spare-GGUF:Q4_K_M';
  await page.goto(`${stack.baseURL}/#/pull`);
  const pv = page.locator('#view-pull');
  await pv.getByLabel('Model reference').fill('e2e/spare-GGUF');
  await pv.getByLabel('Quant').selectOption('Q4_K_M');
  await pv.getByRole('button', { name: 'Pull', exact: true }).click();
  await stateOf(pv.locator(`article.pull-card[data-model="${SPARE}"]`), 'completed').waitFor();

  await view(page, 'Models');
  // The slot serves TINY since the swap test: hal0-apid refuses and the
  // row says why; the model stays.
  const tiny = page.locator(`#models-body tr[data-model="${TINY}"]`);
  await tiny.getByRole('button', { name: `Remove ${TINY}` }).click();
  await tiny.locator('[data-role=remove-confirm]').waitFor();
  await tiny.getByRole('button', { name: 'Remove files' }).click();
  await tiny.locator('[data-role=remove-error]', { hasText: `in use by slot ${SLOT} (ready)` }).waitFor();
  await shot(page, 'remove-refused');

  // Keep changes nothing; Remove files removes the row and the entry.
  const spare = page.locator(`#models-body tr[data-model="${SPARE}"]`);
  await spare.getByRole('button', { name: `Remove ${SPARE}` }).click();
  await spare.getByRole('button', { name: 'Keep' }).click();
  await spare.locator('[data-role=remove-confirm]').waitFor({ state: 'hidden' });
  await spare.getByRole('button', { name: `Remove ${SPARE}` }).click();
  await spare.getByRole('button', { name: 'Remove files' }).click();
  await spare.waitFor({ state: 'detached' });
  await page.locator('#announcer', { hasText: `${SPARE} removed.` }).waitFor();
  const res = await fetch(`${stack.apiURL}/api/models`);
  const ids = (await res.json()).map((m) => m.id);
  assert.ok(!ids.includes(SPARE) && ids.includes(TINY), `registry after removal: ${ids}`);
});

// The catalog the stack indexed (hal0 catalog index of the hub's orgs e2e
// and lab; see e2ehelper's hubRepos for the numbers behind each order).
const NOTES = 'lab/notes-GGUF';
const DISK = 'lab/disk-GGUF';
const DISK_QCOW2 = 'hf://lab/disk-GGUF?format=qcow2';
const EMBED = 'lab/embed';
const GATED_REPO = 'e2e/gated-GGUF';
const BY_DOWNLOADS = ['e2e/tiny-GGUF', GATED_REPO, EMBED, NOTES, 'e2e/spare-GGUF', 'e2e/stall-GGUF', DISK];

const entryRow = (p, id) => p.locator(`#catalog-body tr[data-entry="${id}"]`);
const importCard = (p, entry, model) => p.locator(`#catalog-body tr[data-pulls="${entry}"] article.pull-card[data-model="${model}"]`);

/** catalogIs waits until the Catalog view lists exactly ids, in order. */
async function catalogIs(p, ids) {
  try {
    await p.waitForFunction(
      (want) => [...document.querySelectorAll('#catalog-body tr[data-entry]')].map((tr) => tr.dataset.entry).join(' ') === want,
      ids.join(' '),
      { timeout: 20000 },
    );
  } catch {
    const got = await p.locator('#catalog-body tr[data-entry]').evaluateAll((trs) => trs.map((tr) => tr.dataset.entry));
    assert.deepEqual(got, ids, 'catalog rows');
  }
}

test('catalog: an empty catalog says how to index one', async () => {
  // The real hal0-apid with no catalog file, as before the first index:
  // the file is moved aside for this test only.
  await rename(stack.catalogFile, `${stack.catalogFile}.aside`);
  try {
    await page.goto(`${stack.baseURL}/#/catalog`);
    await page.reload();
    const box = page.locator('[data-role=catalog-empty]');
    await box.waitFor();
    const text = await box.textContent();
    for (const how of ['The catalog is empty.', '[[catalog.source]]', 'hal0 catalog index', 'systemctl enable --now hal0-catalog.timer']) {
      assert.ok(text.includes(how), `the empty catalog says ${how}: ${text}`);
    }
    assert.equal(await page.locator('#catalog-info').textContent(), 'Never indexed.');
    assert.equal(await page.locator('#catalog-form').isVisible(), false, 'no filters over nothing');
    await shot(page, 'catalog-empty');
  } finally {
    await rename(`${stack.catalogFile}.aside`, stack.catalogFile);
  }
});

test('catalog: search, filters and sort narrow and order the list', async () => {
  await view(page, 'Models');
  await view(page, 'Catalog');
  const cv = page.locator('#view-catalog');
  await catalogIs(page, BY_DOWNLOADS);
  assert.match(await page.locator('#catalog-info').textContent(), /^7 models, indexed .+ from http:\/\/127\.0\.0\.1:\d+\.$/);
  assert.equal(await page.locator('#catalog-count').textContent(), '7 of 7 models');

  // What a row says, and where its link goes.
  const notes = entryRow(page, NOTES);
  const cells = Object.fromEntries(
    await notes.locator('td[data-label]').evaluateAll((tds) => tds.map((td) => [td.dataset.label, td.textContent.trim()])),
  );
  assert.deepEqual(
    { task: cells.Task, format: cells.Format, size: cells.Size, downloads: cells.Downloads, likes: cells.Likes, updated: cells.Updated, installed: cells.Installed },
    { task: 'text-generation', format: 'gguf Q4_K_M', size: '12.0 MiB', downloads: '800', likes: '120', updated: '5/20/2025', installed: 'metadata only' },
  );
  assert.equal(await notes.locator('[data-role=license]').textContent(), 'license: mit');
  const link = notes.getByRole('link', { name: NOTES });
  assert.equal(await link.getAttribute('href'), `${stack.hubURL}/${NOTES}`);
  assert.equal(await link.getAttribute('target'), '_blank');
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
  const flags = async (id) => entryRow(page, id).locator('.flag').evaluateAll((fs) => fs.map((f) => f.dataset.flag));
  assert.deepEqual(await flags(GATED_REPO), ['certified', 'gated', 'chat']);
  assert.deepEqual(await flags(NOTES), ['chat']);
  assert.deepEqual(await flags(EMBED), []);
  // TINY was pulled by the first test: the catalog knows it is installed.
  const tiny = entryRow(page, 'e2e/tiny-GGUF');
  assert.equal(await tiny.getAttribute('data-installed'), 'true');
  assert.match(await tiny.locator('[data-role=installed]').textContent(), new RegExp(`^installed${TINY}$`));
  // Every column, Import included, fits a desktop window.
  const wrap = await page.locator('#view-catalog .table-wrap').evaluate((w) => [w.scrollWidth, w.clientWidth]);
  assert.ok(wrap[0] <= wrap[1], `the catalog table is ${wrap[0]}px wide in ${wrap[1]}px`);
  await shot(page, 'catalog');

  // Search: every word must match.
  const search = cv.getByLabel('Search');
  await search.fill('lab');
  await catalogIs(page, [EMBED, NOTES, DISK]);
  await search.fill('lab gguf');
  await catalogIs(page, [NOTES, DISK]);
  assert.equal(await page.locator('#catalog-count').textContent(), '2 of 7 models');
  await search.fill('nothing-like-this');
  await page.locator('#catalog-count', { hasText: 'No model of the 7 matches these filters.' }).waitFor();
  assert.equal(await page.locator('table.catalog').isVisible(), false);
  await search.fill('');
  await catalogIs(page, BY_DOWNLOADS);

  // Task: the choices are the catalog's tasks.
  const task = cv.getByLabel('Task');
  assert.deepEqual(await task.locator('option').evaluateAll((os) => os.map((o) => o.value)), ['', 'feature-extraction', 'text-generation']);
  await task.selectOption('feature-extraction');
  await catalogIs(page, [EMBED]);
  await task.selectOption('');

  // Certified, chat template and gated filters add up.
  await cv.getByLabel('Certified only').check();
  await catalogIs(page, ['e2e/tiny-GGUF', GATED_REPO, 'e2e/spare-GGUF', 'e2e/stall-GGUF']);
  await cv.getByLabel('Has a chat template').check();
  await catalogIs(page, ['e2e/tiny-GGUF', GATED_REPO]);
  await cv.getByLabel('Hide gated models').check();
  await catalogIs(page, ['e2e/tiny-GGUF']);
  await shot(page, 'catalog-filtered');
  await cv.getByLabel('Certified only').uncheck();
  await catalogIs(page, ['e2e/tiny-GGUF', NOTES]);
  await cv.getByLabel('Has a chat template').uncheck();
  await cv.getByLabel('Hide gated models').uncheck();
  await catalogIs(page, BY_DOWNLOADS);

  // Sorts and directions.
  const sort = cv.getByLabel('Sort by');
  await sort.selectOption('likes');
  await catalogIs(page, [NOTES, GATED_REPO, 'e2e/tiny-GGUF', EMBED, DISK, 'e2e/spare-GGUF', 'e2e/stall-GGUF']);
  await sort.selectOption('lastModified');
  await catalogIs(page, [EMBED, NOTES, GATED_REPO, 'e2e/tiny-GGUF', DISK, 'e2e/spare-GGUF', 'e2e/stall-GGUF']);
  await sort.selectOption('size');
  // The directions are named in the sort's own words.
  assert.deepEqual(await cv.getByLabel('Order').locator('option').allTextContents(), ['Largest first', 'Smallest first']);
  await cv.getByLabel('Order').selectOption('asc');
  // 1 MiB, 2 MiB, then the 12 MiB ones by id.
  await catalogIs(page, [EMBED, DISK, GATED_REPO, 'e2e/spare-GGUF', 'e2e/stall-GGUF', 'e2e/tiny-GGUF', NOTES]);
  await shot(page, 'catalog-sorted');
  await cv.getByLabel('Order').selectOption('desc');
  await sort.selectOption('downloads');
  await catalogIs(page, BY_DOWNLOADS);
});

test('catalog: import as a directory shows the live bar, then the row is installed and the model listed', async () => {
  await view(page, 'Catalog');
  const row = entryRow(page, NOTES);
  await row.waitFor();
  await page.evaluate((entry) => {
    window.__bar = [];
    new MutationObserver(() => {
      const bar = document.querySelector(`#catalog-body tr[data-pulls="${entry}"] progress`);
      if (bar && bar.hasAttribute('value') && window.__bar.at(-1) !== bar.value) window.__bar.push(bar.value);
    }).observe(document.querySelector('#catalog-body'), { subtree: true, childList: true, attributes: true });
  }, NOTES);
  assert.equal(await row.getByLabel(`Import ${NOTES} as`).inputValue(), 'dir', 'a directory by default');
  await row.getByRole('button', { name: `Import ${NOTES}` }).click();

  const card = importCard(page, NOTES, NOTES);
  await card.waitFor();
  await stateOf(card, 'completed').waitFor();
  assert.equal(await card.locator('progress').evaluate((b) => b.value), 100);
  assert.match(await card.locator('[data-role=stats]').textContent(), /^12\.0 MiB of 12\.0 MiB · 100%/);
  const seen = await page.evaluate(() => window.__bar);
  assert.equal(seen.at(-1), 100, `bar values ${seen}`);
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), `the bar went backwards: ${seen}`);
  // The row follows the registry: installed, under the id of the pull.
  await page.locator(`#catalog-body tr[data-entry="${NOTES}"][data-installed=true]`).waitFor();
  assert.equal(await row.locator('[data-role=installed]').textContent(), `installed${NOTES}`);
  await shot(page, 'catalog-import');

  const [m] = (await stack.api('GET', '/api/models')).filter((x) => x.id === NOTES);
  assert.ok(m, 'the registry has the import');
  assert.equal(m.format || 'dir', 'dir');
  assert.equal(m.hf_repo, NOTES);
  await view(page, 'Models');
  await page.locator(`#models-body tr[data-model="${NOTES}"]`).waitFor();
  await stateOf(page.locator(`#pulls-list article[data-model="${NOTES}"]`), 'completed').waitFor();
});

test('catalog: keyboard only, import as a qcow2 disk image', async () => {
  await page.goto(`${stack.baseURL}/#/catalog`);
  await page.reload();
  await entryRow(page, DISK).waitFor();
  const select = `#catalog-body tr[data-entry="${DISK}"] select[data-role=import-format]`;
  await tabTo(page, select, 80);
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.locator(select).inputValue(), 'qcow2');
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement?.getAttribute('aria-label'));
  assert.equal(focused, `Import ${DISK}`);
  assert.notEqual(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), 'none', 'the focus is visible');
  await page.keyboard.press('Enter');

  const card = importCard(page, DISK, DISK_QCOW2);
  await stateOf(card, 'completed').waitFor({ timeout: 60000 });
  await page.locator(`#catalog-body tr[data-entry="${DISK}"][data-installed=true]`).waitFor();
  assert.equal(await entryRow(page, DISK).locator('[data-role=installed]').textContent(), `installed${DISK_QCOW2}`);
  // The focus stayed on the button through the pull and the refreshes.
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), `Import ${DISK}`);
  await shot(page, 'catalog-qcow2');

  // The registry has the image, and the image is on disk at its size.
  const [m] = (await stack.api('GET', '/api/models')).filter((x) => x.id === DISK_QCOW2);
  assert.ok(m, `the registry has ${DISK_QCOW2}`);
  assert.equal(m.format, 'qcow2');
  assert.equal(m.hf_repo, DISK);
  assert.match(m.path, /\.qcow2$/);
  assert.equal((await stat(m.path)).size, m.image_size);
  assert.match(m.image_sha256, /^[0-9a-f]{64}$/);
});

test('catalog: importing a gated model shows the link to accept its license', async () => {
  await view(page, 'Catalog');
  const row = entryRow(page, GATED_REPO);
  await row.getByRole('button', { name: `Import ${GATED_REPO}` }).click();
  const card = importCard(page, GATED_REPO, GATED_REPO);
  await stateOf(card, 'failed').waitFor();
  assert.match(await card.locator('[data-role=error-text]').textContent(), /is gated: accept its license at/);
  const link = card.getByRole('link', { name: "Accept the license on the model's page" });
  assert.equal(await link.getAttribute('href'), `${stack.hubURL}/${GATED_REPO}`);
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
  assert.equal(await row.getAttribute('data-installed'), 'false');
  await shot(page, 'catalog-gated');
});

test('models view: catalog models that are not installed, with Pull', async () => {
  await view(page, 'Models');
  const available = page.locator('#available');
  const picks = async () => available.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.entry));
  // By downloads, leaving out TINY, NOTES and DISK, which are installed.
  await page.waitForFunction(() => document.querySelectorAll('#available-body tr').length === 4);
  assert.deepEqual(await picks(), [GATED_REPO, EMBED, 'e2e/spare-GGUF', 'e2e/stall-GGUF']);
  assert.match(await page.locator('#available-help').textContent(), /most downloaded first/);
  await shot(page, 'models-catalog');

  await available.getByRole('button', { name: `Pull ${EMBED} from the catalog` }).click();
  await stateOf(page.locator(`#pulls-list article[data-model="${EMBED}"]`), 'completed').waitFor();
  await page.locator(`#models-body tr[data-model="${EMBED}"]`).waitFor();
  await available.locator(`tr[data-entry="${EMBED}"]`).waitFor({ state: 'detached' });
  assert.deepEqual(await picks(), [GATED_REPO, 'e2e/spare-GGUF', 'e2e/stall-GGUF']);
});

test('phone: every view fits a 390×844 screen', async () => {
  const phone = await newPage({ width: 390, height: 844 }, { isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const views = {
    models: `#models-body tr[data-model="${TINY}"]`,
    pull: '#pull-form',
    slots: `article.slot-card[data-slot="${SLOT}"] [data-role=state][data-state=ready]`,
    catalog: `#catalog-body tr[data-entry="${NOTES}"][data-installed=true]`,
  };
  for (const [name, ready] of Object.entries(views)) {
    await phone.goto(`${stack.baseURL}/#/${name}`);
    await phone.locator(ready).waitFor();
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `${name}: the page is ${width}px wide on a 390px screen`);
    // Touch targets: every visible button and nav link is at least 44px high.
    const small = await phone.evaluate(() =>
      [...document.querySelectorAll('button, nav a')]
        .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().height < 43.5)
        .map((e) => e.textContent.trim()),
    );
    assert.deepEqual(small, [], `${name}: small touch targets`);
    await shot(phone, `phone-${name}`);
  }
  await phone.context().close();
});

test('dark colour scheme: the page follows the system setting', async () => {
  const dark = await newPage({ width: 1280, height: 900 }, { colorScheme: 'dark' });
  await dark.goto(`${stack.baseURL}/#/models`);
  await dark.locator(`#models-body tr[data-model="${TINY}"]`).waitFor();
  const bg = await dark.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(17, 19, 24)');
  await shot(dark, 'models-dark');
  await dark.context().close();
});

test('the page asked nothing of any other host and logged no error', () => {
  assert.deepEqual(problems, []);
});
