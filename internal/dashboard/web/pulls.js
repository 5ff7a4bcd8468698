// Pull jobs: one store that every view reads, live progress cards, the
// "Pulls" list of the Models view and the Pull-by-reference form.

import { APIError, modelPath, mutate, request, stream } from './api.js';
import { $, announce, busy, h, isBusy, keepFocus, safeHTTPURL, setText, show } from './dom.js';
import { bytes, duration, percent, rate } from './format.js';

const FINAL = new Set(['completed', 'failed', 'cancelled']);

export const isFinal = (st) => FINAL.has(st.state);

// At most this many pulls are followed over server-sent events at once.
// hal0-apid speaks HTTP/1.1, where a browser opens six connections per
// origin and every stream holds one for as long as it runs: two for pulls
// leaves room for a slot stream each of the usual two or three slots and
// for the page's own requests. Pulls beyond these are kept current by the
// /api/pulls poll instead.
const FOLLOW_MAX = 2;

// supersedes says whether next is a later report than prev: a new job
// beats an old one; of two reports of one job a final one beats a running
// one, and among running ones the one with more bytes is the later (a poll
// answered before the last event must not move the bar back).
function supersedes(next, prev) {
  if (!prev) return true;
  if (next.job_id !== prev.job_id || next.created_at !== prev.created_at) {
    // A new job, or the same job taken up again after its worker died
    // (which resets created_at): the later start wins.
    return Date.parse(next.created_at) >= Date.parse(prev.created_at);
  }
  if (isFinal(prev)) return isFinal(next);
  return isFinal(next) || next.bytes_done >= prev.bytes_done || next.state !== prev.state;
}

/** showRowPulls shows, on each table row with a Pull button, whether that
 * model's pull is going: the button is busy while it runs (one pull per
 * model at a time; the API would answer with the running job anyway), and
 * the row names the state of a pull this page follows. idOf gives the
 * pull's model id of a row (by default its key in rows). */
export function showRowPulls(rows, store, idOf = (key) => key) {
  for (const [key, row] of rows) {
    if (!row.btn) continue;
    const id = idOf(key, row);
    const st = store.get(id);
    busy(row.btn, Boolean(st && !isFinal(st)));
    setText(row.status, st && store.watched.has(id) ? `pull ${st.state}` : '');
  }
}

/** pullFromRow starts the pull of ref from a table row's Pull button,
 * announcing it under name; an error shows in the row and frees the
 * button. */
export async function pullFromRow(store, ref, row, name = ref) {
  if (isBusy(row.btn)) return;
  busy(row.btn, true);
  show(row.error, false);
  try {
    const st = await mutate('POST', modelPath(ref, '/pull'));
    store.put(st);
    announce(st.existing ? `${name} is already being pulled.` : `Pull of ${name} started.`);
  } catch (err) {
    setText(row.error, err.message);
    show(row.error, true);
    busy(row.btn, false);
  }
}

export class PullStore {
  constructor() {
    this.jobs = new Map(); // model id → PullStatus
    this.stops = new Map(); // model id → closes its event stream
    this.listeners = new Set();
    // Models whose pull this page saw running: their cards stay listed
    // after they end, so the person sees how it ended.
    this.watched = new Set();
    this.dismissed = new Set();
    this.paused = false;
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get(id) {
    return this.jobs.get(id);
  }

  /** newest first */
  all() {
    return [...this.jobs.values()].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
  }

  put(st) {
    if (!st || !st.model_id) return;
    const prev = this.jobs.get(st.model_id);
    if (!supersedes(st, prev)) return;
    this.jobs.set(st.model_id, st);
    if (!isFinal(st)) {
      this.watched.add(st.model_id);
      this.dismissed.delete(st.model_id);
    }
    for (const fn of this.listeners) fn(st, prev);
    this.follow();
  }

  dismiss(id) {
    this.dismissed.add(id);
    const st = this.jobs.get(id);
    for (const fn of this.listeners) fn(st, st);
  }

  /** follow opens event streams for running pulls, up to FOLLOW_MAX, and
   * closes those of pulls that ended. */
  follow() {
    for (const [id, stop] of this.stops) {
      const st = this.jobs.get(id);
      if (this.paused || !st || isFinal(st)) stop();
    }
    if (this.paused) return;
    for (const st of this.all()) {
      if (this.stops.size >= FOLLOW_MAX) break;
      if (!isFinal(st) && !this.stops.has(st.model_id)) this.open(st.model_id);
    }
  }

  open(id) {
    const stop = stream(
      modelPath(id, '/pull/events'),
      'status',
      (st) => this.put(st),
      () => {
        // The server ends the stream after the final state, and the
        // store closes it then; a stream the server refused (the job
        // vanished) is left to the poll.
        this.stops.delete(id);
      },
    );
    this.stops.set(id, stop);
  }

  /** pause closes every stream while the tab is hidden; resume reopens. */
  pause() {
    this.paused = true;
    this.follow();
  }

  resume() {
    this.paused = false;
    this.follow();
  }

  async refresh() {
    const list = await request('GET', '/api/pulls');
    const seen = new Set();
    for (const st of list || []) {
      // Newest first: the first job of a model is its current one.
      if (seen.has(st.model_id)) continue;
      seen.add(st.model_id);
      // A followed job's stream is fresher than this snapshot.
      if (this.stops.has(st.model_id)) continue;
      this.put(st);
    }
  }
}

/** repoOf returns "org/name" of a Hugging Face ref, for the Hub's page. */
export function repoOf(id) {
  let s = id.replace(/^hf:\/\//, '').replace(/\?.*$/, '');
  const parts = s.split('/');
  if (parts.length < 2) return '';
  s = `${parts[0]}/${parts[1]}`;
  return s.replace(/[:@].*$/, '');
}

/** licenseURL finds the page where a gated model's license is accepted:
 * the link in the error message (it names the endpoint the pull used, a
 * mirror perhaps), else the model's page on huggingface.co. */
export function licenseURL(st) {
  const m = /\bhttps?:\/\/[^\s,;]+/.exec(st.error || '');
  const fromMsg = m ? safeHTTPURL(m[0].replace(/[.)]+$/, '')) : '';
  if (fromMsg) return fromMsg;
  const repo = repoOf(st.model_id || '');
  return repo ? `https://huggingface.co/${repo}` : '';
}

function pctText(p) {
  return `${p >= 100 ? 100 : p.toFixed(1)}%`;
}

/** statsLine is the one-line summary under a bar: bytes, percent,
 * throughput and ETA while running; bytes and time taken once ended. */
export function statsLine(st) {
  const p = percent(st.bytes_done, st.bytes_total);
  const parts = [];
  parts.push(st.bytes_total > 0 ? `${bytes(st.bytes_done)} of ${bytes(st.bytes_total)}` : bytes(st.bytes_done || 0));
  if (p !== null) parts.push(pctText(st.state === 'completed' ? 100 : p));
  if (isFinal(st)) {
    if (st.elapsed_s > 0) parts.push(`took ${duration(st.elapsed_s)}`);
  } else {
    parts.push(rate(st.rate_bps));
    parts.push(`ETA ${duration(st.eta_s)}`);
  }
  return parts.join(' · ');
}

let cardSeq = 0;

/**
 * PullCard shows one model's pull: state, a bar, bytes, throughput, ETA,
 * the error, and Cancel or Pull again. It is built once and updated in
 * place, so keyboard focus on its buttons survives every event.
 */
export class PullCard {
  constructor(store, id, { dismissible = false } = {}) {
    this.store = store;
    this.id = id;
    const n = ++cardSeq;
    const titleId = `pull-title-${n}`;
    this.badge = h('span', { class: 'badge', 'data-role': 'state' });
    this.bar = h('progress', { max: '100', 'aria-labelledby': titleId, 'data-role': 'bar' });
    this.stats = h('p', { class: 'stats', 'data-role': 'stats' });
    this.detail = h('p', { class: 'detail' });
    this.title = h('h3', { id: titleId, tabindex: '-1' }, h('code', { text: id }));
    this.errText = h('span', { 'data-role': 'error-text' });
    this.license = h('a', { class: 'license', target: '_blank', rel: 'noopener noreferrer', 'data-role': 'license' }, "Accept the license on the model's page");
    this.error = h('div', { class: 'error', 'data-role': 'error' }, this.errText, ' ', this.license);
    this.actionError = h('p', { class: 'error', role: 'alert', hidden: true });
    this.cancelBtn = h('button', { type: 'button', onclick: () => this.cancel() }, 'Cancel');
    this.retryBtn = h('button', { type: 'button', onclick: () => this.retry() }, 'Pull again');
    this.dismissBtn = dismissible
      ? h('button', { type: 'button', class: 'quiet', onclick: () => store.dismiss(id) }, 'Dismiss')
      : null;
    this.el = h(
      'article',
      { class: 'card pull-card', 'data-model': id, 'aria-labelledby': titleId },
      h('div', { class: 'card-head' }, this.title, this.badge),
      this.bar,
      this.stats,
      this.detail,
      this.error,
      h('div', { class: 'actions' }, this.cancelBtn, this.retryBtn, this.dismissBtn),
      this.actionError,
    );
    // Names that say which model, for screen readers moving by buttons.
    this.cancelBtn.setAttribute('aria-label', `Cancel the pull of ${id}`);
    this.retryBtn.setAttribute('aria-label', `Pull ${id} again`);
    if (this.dismissBtn) this.dismissBtn.setAttribute('aria-label', `Dismiss the pull of ${id}`);
    const st = store.get(id);
    if (st) this.update(st);
  }

  update(st) {
    // Cancel vanishes once the pull ends: its focus goes to Pull again.
    keepFocus(this.el, () => this.fill(st), [this.retryBtn, this.dismissBtn, this.title]);
  }

  fill(st) {
    this.el.dataset.state = st.state;
    setText(this.badge, st.phase && st.state === 'running' ? `${st.state} · ${st.phase}` : st.state);
    this.badge.dataset.state = st.state;
    const p = st.state === 'completed' ? 100 : percent(st.bytes_done, st.bytes_total);
    if (p === null && !isFinal(st)) {
      this.bar.removeAttribute('value'); // indeterminate until the size is known
    } else {
      this.bar.value = p ?? 0;
    }
    this.bar.textContent = p === null ? '' : pctText(p);
    setText(this.stats, statsLine(st));
    let detail = '';
    if (!isFinal(st) && st.files_total > 0) {
      detail = `file ${Math.min(st.files_done + 1, st.files_total)} of ${st.files_total}`;
      if (st.current_file) detail += `: ${st.current_file}`;
    } else if (st.state === 'completed' && st.path) {
      detail = `installed: ${st.path}`;
    }
    setText(this.detail, detail);
    show(this.detail, detail !== '');
    // A cancelled pull says what became of its data; only failures are
    // shown as errors.
    const failed = st.state === 'failed';
    const said = failed ? st.error || `failed (${st.error_code || 'unknown error'})` : st.state === 'cancelled' && st.error !== 'pull cancelled' ? st.error || '' : '';
    setText(this.errText, said);
    this.error.className = failed ? 'error' : 'note';
    const gated = st.error_code === 'pull.gated';
    const url = gated ? licenseURL(st) : '';
    if (url) this.license.href = url;
    show(this.license, Boolean(url));
    show(this.error, Boolean(said));
    show(this.cancelBtn, !isFinal(st));
    show(this.retryBtn, st.state === 'failed' || st.state === 'cancelled');
    if (this.dismissBtn) show(this.dismissBtn, isFinal(st));
  }

  async act(btn, fn) {
    if (isBusy(btn)) return;
    busy(btn, true);
    show(this.actionError, false);
    try {
      this.store.put(await fn());
    } catch (err) {
      setText(this.actionError, err.message);
      show(this.actionError, true);
    } finally {
      busy(btn, false);
    }
  }

  cancel() {
    return this.act(this.cancelBtn, () => mutate('POST', modelPath(this.id, '/pull/cancel')));
  }

  retry() {
    return this.act(this.retryBtn, () => mutate('POST', modelPath(this.id, '/pull')));
  }
}

/**
 * PullsList is the Models view's list of pulls: running ones, ones this
 * page saw running (until dismissed), and recent failures of models that
 * are not installed.
 */
export class PullsList {
  constructor(store, listEl, emptyEl, isInstalled) {
    this.store = store;
    this.listEl = listEl;
    this.emptyEl = emptyEl;
    this.isInstalled = isInstalled;
    this.heading = $('#h-pulls');
    this.cards = new Map();
    store.subscribe((st) => this.render(st));
  }

  visible(st) {
    if (this.store.dismissed.has(st.model_id)) return false;
    if (!isFinal(st) || this.store.watched.has(st.model_id)) return true;
    if (st.state === 'completed') return false;
    const ended = Date.parse(st.finished_at || st.created_at);
    return !this.isInstalled(st.model_id) && Date.now() - ended < 24 * 3600 * 1000;
  }

  /** render updates the card of st, or rebuilds the list's membership. */
  render(st) {
    if (st) {
      const card = this.cards.get(st.model_id);
      if (card && this.visible(st)) {
        card.update(st);
        return;
      }
    }
    const want = this.store.all().filter((s) => this.visible(s));
    const ids = new Set(want.map((s) => s.model_id));
    for (const [id, card] of this.cards) {
      if (!ids.has(id)) {
        // Dismiss removes its own card: the focus goes to the list's
        // heading rather than to the top of the page.
        keepFocus(this.listEl, () => card.el.closest('li').remove(), [this.heading]);
        this.cards.delete(id);
      }
    }
    // Keep existing cards (and the focus inside them); add new ones at
    // their place in newest-first order.
    let prev = null;
    for (const s of want) {
      let card = this.cards.get(s.model_id);
      if (!card) {
        card = new PullCard(this.store, s.model_id, { dismissible: true });
        this.cards.set(s.model_id, card);
        const li = h('li', {}, card.el);
        if (prev) prev.after(li);
        else this.listEl.prepend(li);
      } else {
        card.update(s);
      }
      prev = card.el.closest('li');
    }
    show(this.emptyEl, want.length === 0);
  }
}

/**
 * PullForm is the Pull view: a reference, a quant, a revision and a format.
 * The card of the pull it started is shown under it and follows the pull
 * live; the same pull is listed in the Models view.
 */
export class PullForm {
  constructor(store) {
    this.store = store;
    this.form = $('#pull-form');
    this.ref = $('#pull-ref');
    this.quant = $('#pull-quant');
    this.revision = $('#pull-revision');
    this.error = $('#pull-error');
    this.result = $('#pull-result');
    this.submit = $('#pull-submit');
    this.card = null;
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.start();
    });
    store.subscribe((st) => {
      if (this.card && st.model_id === this.card.id) this.card.update(st);
    });
  }

  fail(msg) {
    setText(this.error, msg);
    show(this.error, true);
    this.ref.setAttribute('aria-invalid', 'true');
  }

  async start() {
    show(this.error, false);
    this.ref.removeAttribute('aria-invalid');
    const ref = this.ref.value.trim();
    if (!ref) {
      this.fail('Enter a model reference, for example Qwen/Qwen3-4B-GGUF:Q4_K_M.');
      this.ref.focus();
      return;
    }
    const body = {};
    if (this.quant.value) body.quant = this.quant.value;
    if (this.revision.value.trim()) body.revision = this.revision.value.trim();
    const format = this.form.elements.format.value;
    if (format && format !== 'dir') body.format = format;
    if (isBusy(this.submit)) return;
    busy(this.submit, true);
    try {
      const st = await mutate('POST', modelPath(ref, '/pull'), body);
      this.store.put(st);
      if (!this.card || this.card.id !== st.model_id) {
        this.card = new PullCard(this.store, st.model_id);
        this.result.replaceChildren(this.card.el);
      }
      this.card.update(this.store.get(st.model_id) || st);
      announce(st.existing ? `${st.model_id} is already being pulled; following it.` : `Pull of ${st.model_id} started.`);
    } catch (err) {
      const hint = err instanceof APIError && err.code === 'model.invalid_ref' ? ' Check the reference.' : '';
      this.fail(err.message + hint);
    } finally {
      busy(this.submit, false);
    }
  }
}
