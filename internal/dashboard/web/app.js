// hal0 dashboard: views, routing, the token dialog and the refresh loop.
// Plain ES modules served by hal0-apid; there is no build step.

import { getToken, onTokenChange, request, setToken, setTokenPrompt } from './api.js';
import { CatalogPicks, CatalogView } from './catalog.js';
import { $, announce, setText, show } from './dom.js';
import { ModelsTable } from './models.js';
import { NPUCatalog } from './npu.js';
import { PullForm, PullStore, PullsList, isFinal } from './pulls.js';
import { SlotsView } from './slots.js';

const VIEWS = {
  models: 'Models',
  pull: 'Pull',
  slots: 'Slots',
  catalog: 'Catalog',
};

// How often the page asks for the list of pulls (which also notices pulls
// started from the CLI) and re-reads the installed models, while visible.
const PULLS_EVERY_MS = 3000;
const MODELS_EVERY_MS = 30000;

const store = new PullStore();
const models = new ModelsTable(store, $('#models-body'), $('#models-empty'), $('#models-status'));
const npu = new NPUCatalog(store, $('#npu-body'), $('#npu-empty'), $('#npu-status'), $('#npu-warning'));
// The NPU list leaves out what is installed: it follows the installed list.
models.onChange(() => npu.refresh());
new PullsList(store, $('#pulls-list'), $('#pulls-empty'), (id) => models.has(id));
new PullForm(store);
const slots = new SlotsView(models);
const catalog = new CatalogView(store, models);
new CatalogPicks(store, models, catalog);

let current = '';

/** route shows the view named by the hash (#/models, #/pull, ...). Other
 * hashes (the skip link's #main) leave the view as it is. */
function route(moveFocus) {
  const m = /^#\/([a-z]+)/.exec(location.hash);
  if (location.hash && !m && current) return;
  const name = m && VIEWS[m[1]] ? m[1] : 'models';
  if (name === current) return;
  const prev = current;
  current = name;
  for (const sec of document.querySelectorAll('main > .view')) sec.hidden = sec.dataset.view !== name;
  for (const a of document.querySelectorAll('nav a[data-view]')) {
    if (a.dataset.view === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${VIEWS[name]} · hal0`;
  if (prev === 'slots') slots.hide();
  if (name === 'slots') slots.show();
  if (prev === 'catalog') catalog.hide();
  if (name === 'catalog') catalog.show();
  if (name === 'models') models.refresh();
  // Moving focus to the new view's heading tells screen-reader and
  // keyboard users where they are, as a page load would.
  if (moveFocus) document.querySelector(`#view-${name} h1`).focus();
}

// --- the token dialog ---------------------------------------------------

const dialog = $('#token-dialog');
const tokenForm = $('#token-form');
const tokenInput = $('#token-input');
const tokenReason = $('#token-reason');
let resolveDialog = null;

function openTokenDialog(reason) {
  setText(tokenReason, reason || '');
  show(tokenReason, Boolean(reason));
  tokenInput.value = '';
  if (!dialog.open) dialog.showModal();
  tokenInput.focus();
  return new Promise((resolve) => {
    if (resolveDialog) resolveDialog(false);
    resolveDialog = resolve;
  });
}

function closeTokenDialog(saved) {
  if (dialog.open) dialog.close();
  if (resolveDialog) {
    const r = resolveDialog;
    resolveDialog = null;
    r(saved);
  }
}

tokenForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = tokenInput.value.trim();
  if (!t) {
    setText(tokenReason, 'Enter the token, or Cancel.');
    show(tokenReason, true);
    tokenInput.focus();
    return;
  }
  setToken(t);
  tokenInput.value = '';
  announce('API token saved for this tab.');
  closeTokenDialog(true);
});
$('#token-forget').addEventListener('click', () => {
  setToken('');
  announce('API token forgotten.');
  closeTokenDialog(false);
});
$('#token-cancel').addEventListener('click', () => closeTokenDialog(false));
// Escape closes a modal dialog without a submit.
dialog.addEventListener('close', () => closeTokenDialog(false));
$('#token-button').addEventListener('click', () => openTokenDialog(''));

function showTokenState(has) {
  setText($('#token-state'), has ? 'set' : 'not set');
}
onTokenChange(showTokenState);
showTokenState(Boolean(getToken()));
setTokenPrompt((message) => openTokenDialog(`${message}. Enter the API token to go on.`));

// --- what the page says about the server -----------------------------------

const banner = $('#banner');

function reachable(ok, err) {
  if (ok) {
    show(banner, false);
    return;
  }
  setText(banner, `hal0-apid is not answering: ${err.message} The page keeps trying.`);
  show(banner, true);
}

async function serverInfo() {
  try {
    const [v, hl] = await Promise.all([request('GET', '/api/version'), request('GET', '/api/health')]);
    setText($('#server-info'), `hal0-apid ${v.version}${v.commit ? ` (${v.commit.slice(0, 12)})` : ''} · API ${v.api} · pulls run as ${hl.runner}`);
  } catch (err) {
    setText($('#server-info'), `hal0-apid: ${err.message}`);
  }
}

// --- announcements of pulls this page follows -------------------------------

store.subscribe((st, prev) => {
  if (!st || !store.watched.has(st.model_id) || !prev || prev === st) return;
  if (prev.state !== st.state) {
    let msg = `Pull of ${st.model_id}: ${st.state}.`;
    if (st.state === 'failed' && st.error) msg += ` ${st.error}`;
    announce(msg);
    return;
  }
  // A quarter at a time: often enough to follow, rarely enough not to
  // drown out everything else a screen reader has to say.
  const q = (s) => (s.bytes_total > 0 ? Math.floor((4 * s.bytes_done) / s.bytes_total) : 0);
  if (!isFinal(st) && q(st) > q(prev) && q(st) < 4) announce(`${st.model_id}: ${q(st) * 25}% pulled.`);
});

// --- the refresh loop --------------------------------------------------------

let lastModels = 0;
let timer = 0;
let ticking = false;

// tick polls once and schedules the next poll. Calling it early (the tab
// came back) polls now; one chain of timers runs at a time.
async function tick() {
  clearTimeout(timer);
  if (ticking) return; // the running tick schedules the next one
  ticking = true;
  try {
    if (!document.hidden) {
      try {
        await store.refresh();
        reachable(true);
      } catch (err) {
        reachable(false, err);
      }
      if (Date.now() - lastModels > MODELS_EVERY_MS) {
        lastModels = Date.now();
        models.refresh();
      }
    }
  } finally {
    ticking = false;
    timer = setTimeout(tick, PULLS_EVERY_MS);
  }
}

// Streams hold connections (and keep a socket-activated hal0-apid awake):
// none stay open in a hidden tab.
document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    store.pause();
    if (current === 'slots') slots.hide();
  } else {
    store.resume();
    if (current === 'slots') slots.show();
    tick();
  }
});

window.addEventListener('hashchange', () => route(true));
route(false);
serverInfo();
lastModels = Date.now();
if (current !== 'models') models.refresh(); // the swap picker lists them
tick();
