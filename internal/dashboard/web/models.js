// The installed models of the Models view (GET /api/models).

import { modelPath, mutate, request } from './api.js';
import { announce, busy, h, isBusy, setText, show, syncRows } from './dom.js';
import { bytes, shortCommit, when } from './format.js';
import { pullFromRow, showRowPulls } from './pulls.js';

/** pullable says whether pulling a model again makes sense: models pulled
 * from a hub can be brought up to date (or have missing files fetched
 * again), and NPU (FLM) models carry pullable = true; pre-staged local
 * models have nothing to pull from. */
export function pullable(m) {
  return m.source === 'hf' || Boolean(m.pullable);
}

function sourceText(m) {
  const src = m.source || 'local';
  if (!m.endpoint) return src;
  try {
    return `${src} (${new URL(m.endpoint).host})`;
  } catch {
    return src;
  }
}

export class ModelsTable {
  constructor(store, body, emptyEl, statusEl) {
    this.store = store;
    this.body = body;
    this.emptyEl = emptyEl;
    this.statusEl = statusEl;
    this.models = [];
    this.ids = new Set();
    this.listeners = new Set();
    this.rows = new Map(); // id → { tr, fill, btn, status, error }
    store.subscribe((st, prev) => {
      // A pull seen running that completed installed (or updated) a
      // model. Jobs first seen already completed (the first poll lists
      // old ones) are in the list the page loaded with.
      if (st && st.state === 'completed' && prev && (prev.state !== 'completed' || prev.job_id !== st.job_id)) this.refresh();
      this.updateRowPulls();
    });
  }

  onChange(fn) {
    this.listeners.add(fn);
  }

  has(id) {
    return this.ids.has(id);
  }

  async refresh() {
    try {
      const list = await request('GET', '/api/models');
      this.models = list || [];
      show(this.statusEl, false);
    } catch (err) {
      setText(this.statusEl, `Could not list the installed models: ${err.message}`);
      show(this.statusEl, true);
      return;
    }
    this.ids = new Set(this.models.map((m) => m.id));
    this.render();
    for (const fn of this.listeners) fn(this.models);
  }

  render() {
    // Rows are built once and filled in place, so a focused Pull button
    // keeps its focus when the pull it started updates the model.
    syncRows(this.body, this.rows, this.models, (m) => this.row(m));
    show(this.emptyEl, this.models.length === 0);
    show(this.body.closest('table'), this.models.length > 0);
    this.updateRowPulls();
  }

  row(m) {
    const cell = (label) => h('td', { 'data-label': label });
    const name = h('div', { class: 'sub' });
    const c = {
      size: cell('Size'),
      source: cell('Source'),
      backends: cell('Backends'),
      commit: cell('Commit'),
      format: cell('Format'),
      installed: cell('Installed'),
    };
    const actions = h('td', { class: 'row-actions', 'data-label': 'Actions' });
    const row = { tr: null, btn: null, status: null, error: null };
    if (pullable(m)) {
      row.btn = h('button', { type: 'button', 'data-role': 'pull', 'aria-label': `Pull ${m.id}` }, 'Pull');
      row.status = h('span', { class: 'row-status', 'data-role': 'row-status' });
      row.error = h('p', { class: 'error', role: 'alert', hidden: true });
      row.btn.addEventListener('click', () => pullFromRow(this.store, m.id, row));
      actions.append(row.btn, row.status, row.error);
    }
    this.removal(m.id, actions);
    row.tr = h(
      'tr',
      { 'data-model': m.id },
      h('th', { scope: 'row', 'data-label': 'Model' }, h('code', { text: m.id }), name),
      c.size, c.source, c.backends, c.commit, c.format, c.installed,
      actions,
    );
    row.fill = (mm) => {
      setText(name, mm.name && mm.name !== mm.id ? mm.name : '');
      show(name, Boolean(mm.name && mm.name !== mm.id));
      setText(c.size, bytes(mm.size_bytes));
      setText(c.source, sourceText(mm));
      setText(c.backends, mm.backends && mm.backends.length ? mm.backends.join(', ') : '—');
      if (mm.commit) {
        c.commit.replaceChildren(h('code', { title: mm.commit, text: shortCommit(mm.commit) }));
      } else {
        setText(c.commit, '—');
      }
      setText(c.format, mm.format || 'dir');
      setText(c.installed, when(mm.installed_at) || '—');
    };
    return row;
  }

  /** removal adds Remove to a row: a first press asks, a second removes
   * (DELETE /api/models/{id}). hal0-apid refuses while a pull of the model
   * runs or a slot uses it, and the row shows its message. */
  removal(id, actions) {
    const remove = h('button', { type: 'button', class: 'danger-quiet', 'data-role': 'remove', 'aria-label': `Remove ${id}` }, 'Remove');
    const confirmBtn = h('button', { type: 'button', class: 'danger', 'data-role': 'confirm-remove' }, 'Remove files');
    const keep = h('button', { type: 'button', 'data-role': 'keep' }, 'Keep');
    const ask = h('p', { class: 'confirm', hidden: true, 'data-role': 'remove-confirm' }, `Remove ${id} and delete its files? `, confirmBtn, ' ', keep);
    const error = h('p', { class: 'error', role: 'alert', hidden: true, 'data-role': 'remove-error' });
    remove.addEventListener('click', () => {
      show(error, false);
      show(ask, true);
      keep.focus();
    });
    keep.addEventListener('click', () => {
      show(ask, false);
      remove.focus();
    });
    confirmBtn.addEventListener('click', async () => {
      if (isBusy(confirmBtn)) return;
      busy(confirmBtn, true);
      try {
        await mutate('DELETE', modelPath(id));
        announce(`${id} removed.`);
        await this.refresh();
      } catch (err) {
        show(ask, false);
        setText(error, err.message);
        show(error, true);
        remove.focus();
      } finally {
        busy(confirmBtn, false);
      }
    });
    actions.append(remove, ask, error);
  }

  updateRowPulls() {
    showRowPulls(this.rows, this.store);
  }
}
