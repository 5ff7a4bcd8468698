// The NPU models of the Models view: FastFlowLM's catalog
// (GET /api/flm/models), the tags the NPU can run that hal0 has not
// installed yet, each with a Pull button. FLM runs only its own models,
// so these are the only pulls that give an NPU slot something to serve.

import { APIError, request } from './api.js';
import { h, setText, show, syncRows } from './dom.js';
import { bytes } from './format.js';
import { pullFromRow, showRowPulls } from './pulls.js';

export class NPUCatalog {
  constructor(store, body, emptyEl, statusEl, warnEl) {
    this.store = store;
    this.body = body;
    this.emptyEl = emptyEl;
    this.statusEl = statusEl;
    this.warnEl = warnEl;
    this.rows = new Map(); // tag → { tr, btn, status, error }
    this.loaded = false;
    store.subscribe((st, prev) => {
      // A pull of a catalog tag that completed installed it: it leaves
      // this list for the Installed one.
      if (st && st.kind === 'flm' && st.state === 'completed' && prev && prev.state !== 'completed') this.refresh();
      this.updateRowPulls();
    });
  }

  async refresh() {
    let cat;
    try {
      cat = await request('GET', '/api/flm/models');
    } catch (err) {
      // 503: no flm to ask (no toolbox image, no host flm). Said once,
      // without a table.
      const why = err instanceof APIError && err.code === 'pull.flm_unavailable' ? 'FastFlowLM is not available' : 'Could not list the NPU models';
      setText(this.statusEl, `${why}: ${err.message}`);
      show(this.statusEl, true);
      show(this.body.closest('table'), false);
      show(this.emptyEl, false);
      show(this.warnEl, false);
      return;
    }
    show(this.statusEl, false);
    setText(this.warnEl, cat.warning || '');
    show(this.warnEl, Boolean(cat.warning));
    const todo = (cat.models || []).filter((m) => !m.installed);
    this.render(todo);
    this.loaded = true;
  }

  render(models) {
    syncRows(this.body, this.rows, models, (m) => this.row(m));
    show(this.emptyEl, models.length === 0);
    show(this.body.closest('table'), models.length > 0);
    this.updateRowPulls();
  }

  row(m) {
    const cell = (label) => h('td', { 'data-label': label });
    const c = { size: cell('Size'), caps: cell('Capabilities'), cache: cell('In flm\'s cache') };
    const row = { tr: null };
    row.btn = h('button', { type: 'button', 'data-role': 'pull', 'aria-label': `Pull ${m.id}` }, 'Pull');
    row.status = h('span', { class: 'row-status', 'data-role': 'row-status' });
    row.error = h('p', { class: 'error', role: 'alert', hidden: true });
    row.btn.addEventListener('click', () => pullFromRow(this.store, m.id, row));
    row.tr = h(
      'tr',
      { 'data-model': m.id },
      h('th', { scope: 'row', 'data-label': 'Model' }, h('code', { text: m.id })),
      c.size, c.caps, c.cache,
      h('td', { class: 'row-actions', 'data-label': 'Actions' }, row.btn, row.status, row.error),
    );
    row.fill = (mm) => {
      setText(c.size, bytes(mm.size_bytes));
      setText(c.caps, (mm.capabilities || []).join(', ') || '—');
      // Pulled with flm outside hal0. hal0 does not trust files it did not
      // record (flm checks presence only), so a Pull downloads it again.
      setText(c.cache, mm.flm_installed ? 'yes' : 'no');
    };
    return row;
  }

  updateRowPulls() {
    showRowPulls(this.rows, this.store);
  }
}
