// The catalog (GET /api/catalog): the Catalog view, with search, filters,
// sort and Import as a directory or a qcow2 image, and the Models view's
// short list of catalog models that are not installed yet.
//
// The catalog is metadata that `hal0 catalog index` wrote; hal0-apid marks
// each entry installed or not from the registry at request time. An import
// is an ordinary pull of the entry's hf:// URI (with ?format=qcow2 for a
// disk image), exactly what `hal0 catalog import --format` starts, so its
// progress lives in the shared PullStore like any other pull.

import { modelPath, mutate, request } from './api.js';
import { $, announce, busy, h, isBusy, safeHTTPURL, setText, show, syncRows } from './dom.js';
import { bytes, when } from './format.js';
import { PullCard, isFinal, pullFromRow, showRowPulls } from './pulls.js';

// The formats an import can take; the select's label says what they are.
const FORMATS = [
  ['dir', 'dir'],
  ['qcow2', 'qcow2'],
];

// How long the search field waits for more typing before it asks.
const TYPE_DELAY_MS = 250;

// How many entries the Models view offers.
const PICKS = 5;

/** importRef is what an import pulls: the entry's hf:// URI, plus
 * ?format=qcow2 for a disk image. */
export function importRef(e, format) {
  const uri = e.uri || `hf://${e.id}`;
  return format === 'qcow2' ? `${uri}?format=qcow2` : uri;
}

/** importID is the model id hal0-apid gives that pull (the canonical
 * form of importRef), so a row can find its pull in the store, including
 * one started with `hal0 catalog import`. */
export function importID(e, format) {
  return format === 'qcow2' ? `hf://${e.id}?format=qcow2` : e.id;
}

const count = (n) => (Number.isFinite(n) ? n.toLocaleString() : '—');

/** modelCell is the row header of an entry: its id, linked to its page on
 * the hub (a new tab, with no way back to this page), and its marks. */
function modelCell(e) {
  const url = safeHTTPURL(e.web_url);
  const name = h('code', { text: e.id });
  const marks = h('span', { class: 'flags' });
  const flag = (on, key, text, title) => (on ? h('span', { class: 'flag', 'data-flag': key, title }, text) : null);
  marks.append(
    ...[
      flag(e.certified, 'certified', 'certified', 'Its organisation is in catalog.certified_orgs'),
      flag(e.gated, 'gated', 'gated', 'Accept the license on its page and set HF_TOKEN before importing'),
      flag(e.has_chat_template, 'chat', 'chat template', e.chat_template_source ? `Found in ${e.chat_template_source}` : ''),
    ].filter(Boolean),
  );
  return [
    url ? h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', 'data-role': 'web' }, name) : name,
    marks.childNodes.length ? marks : null,
  ];
}

function formatText(e) {
  return [e.format || 'files', e.quant].filter(Boolean).join(' ');
}

// The direction select's words for each sort: desc, then asc.
const DIRECTIONS = {
  downloads: ['Most first', 'Fewest first'],
  likes: ['Most first', 'Fewest first'],
  lastModified: ['Newest first', 'Oldest first'],
  size: ['Largest first', 'Smallest first'],
};

/** orderText says in words how entries are sorted. */
function orderText(sort, direction) {
  const asc = direction === 'asc';
  switch (sort) {
    case 'likes':
      return asc ? 'fewest likes first' : 'most liked first';
    case 'lastModified':
      return asc ? 'least recently updated first' : 'most recently updated first';
    case 'size':
      return asc ? 'smallest first' : 'largest first';
    default:
      return asc ? 'fewest downloads first' : 'most downloaded first';
  }
}

let seq = 0;

/**
 * CatalogView is the Catalog view. Rows are built once per entry and
 * filled in place, so the focus on an Import button survives the
 * refreshes a pull's completion brings.
 */
export class CatalogView {
  constructor(store, models) {
    this.store = store;
    this.form = $('#catalog-form');
    this.q = $('#catalog-q');
    this.task = $('#catalog-task');
    this.sort = $('#catalog-sort');
    this.direction = $('#catalog-direction');
    this.certified = $('#catalog-certified');
    this.chat = $('#catalog-chat');
    this.hideGated = $('#catalog-hide-gated');
    this.info = $('#catalog-info');
    this.status = $('#catalog-status');
    this.empty = $('#catalog-empty');
    this.emptyTitle = $('#catalog-empty-title');
    this.count = $('#catalog-count');
    this.body = $('#catalog-body');
    this.table = this.body.closest('table');
    this.rows = new Map(); // entry id → row
    // entry id → model ids this page imported it as; kept apart from the
    // rows, which a filter may drop and bring back.
    this.started = new Map();
    this.tasks = new Set();
    this.visible = false;
    this.asked = 0; // the newest query sent; older answers are dropped
    this.listeners = new Set();
    this.lastOrder = JSON.stringify(this.order());
    this.typing = 0;

    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.changed();
    });
    this.q.addEventListener('input', () => {
      clearTimeout(this.typing);
      this.typing = setTimeout(() => this.changed(), TYPE_DELAY_MS);
    });
    for (const el of [this.task, this.sort, this.direction, this.certified, this.chat, this.hideGated]) {
      el.addEventListener('change', () => this.changed());
    }
    store.subscribe(() => this.updatePulls());
    // An import that completed (or a model removed) changes what is
    // installed; the page learns it from the models list.
    models.onChange(() => {
      if (this.visible) this.refresh();
    });
  }

  /** onOrder calls fn({sort, direction}) when the order changes. */
  onOrder(fn) {
    this.listeners.add(fn);
  }

  order() {
    return { sort: this.sort.value, direction: this.direction.value };
  }

  /** labelDirection names the two directions in the words of the sort. */
  labelDirection() {
    const [desc, asc] = DIRECTIONS[this.sort.value] || DIRECTIONS.downloads;
    for (const o of this.direction.options) setText(o, o.value === 'asc' ? asc : desc);
  }

  changed() {
    clearTimeout(this.typing);
    this.labelDirection();
    this.refresh();
    const o = this.order();
    if (JSON.stringify(o) === this.lastOrder) return;
    this.lastOrder = JSON.stringify(o);
    for (const fn of this.listeners) fn(o);
  }

  show() {
    this.visible = true;
    this.refresh();
  }

  hide() {
    this.visible = false;
  }

  params() {
    const p = new URLSearchParams();
    const q = this.q.value.trim();
    if (q) p.set('q', q);
    if (this.task.value) p.set('task', this.task.value);
    p.set('sort', this.sort.value);
    p.set('direction', this.direction.value);
    if (this.certified.checked) p.set('certified', 'true');
    if (this.chat.checked) p.set('chat_template', 'true');
    if (this.hideGated.checked) p.set('gated', 'false');
    return p;
  }

  async refresh() {
    const n = ++this.asked;
    let list;
    try {
      list = await request('GET', `/api/catalog?${this.params()}`);
    } catch (err) {
      if (n !== this.asked) return;
      setText(this.status, `Could not read the catalog: ${err.message}`);
      show(this.status, true);
      return;
    }
    if (n !== this.asked) return; // a newer query is on its way
    show(this.status, false);
    this.render(list);
  }

  render(list) {
    const entries = list.entries || [];
    const none = !list.total;
    if (list.indexed_at) {
      setText(this.info, `${count(list.total)} models, indexed ${when(list.indexed_at)}${list.endpoint ? ` from ${list.endpoint}` : ''}.`);
    } else {
      setText(this.info, 'Never indexed.');
    }
    setText(this.emptyTitle, list.indexed_at ? `The last index (${when(list.indexed_at)}) found no model.` : 'The catalog is empty.');
    show(this.empty, none);
    show(this.form, !none);
    show(this.count, !none);
    show(this.table, entries.length > 0);
    setText(this.count, entries.length ? `${count(list.count)} of ${count(list.total)} models` : `No model of the ${count(list.total)} matches these filters.`);
    this.addTasks(entries);

    // Each entry is its row and, below it, the row of its pulls.
    syncRows(this.body, this.rows, entries, (e) => this.row(e), (row) => [row.tr, row.pullTr]);
    this.updatePulls();
  }

  /** addTasks adds the tasks of entries to the Task select, in order. The
   * first answer lists every entry, so the select soon has them all. */
  addTasks(entries) {
    for (const e of entries) {
      if (!e.task || this.tasks.has(e.task)) continue;
      this.tasks.add(e.task);
      const opt = h('option', { value: e.task }, e.task);
      const after = [...this.task.options].slice(1).find((o) => o.value > e.task);
      this.task.insertBefore(opt, after || null);
    }
  }

  row(e) {
    const n = ++seq;
    const cell = (label) => h('td', { 'data-label': label });
    const c = {
      task: cell('Task'),
      format: cell('Format'),
      size: cell('Size'),
      downloads: cell('Downloads'),
      likes: cell('Likes'),
      updated: cell('Updated'),
      installed: h('td', { 'data-label': 'Installed', 'data-role': 'installed' }),
    };
    const head = h('th', { scope: 'row', 'data-label': 'Model' });
    const license = h('div', { class: 'sub', 'data-role': 'license' });
    const note = h('div', { class: 'sub', hidden: true });
    const selectId = `catalog-format-${n}`;
    const row = {
      entry: e,
      format: h('select', { id: selectId, 'data-role': 'import-format' }, FORMATS.map(([v, t]) => h('option', { value: v }, t))),
      btn: h('button', { type: 'button', 'data-role': 'import', 'aria-label': `Import ${e.id}` }, 'Import'),
      error: h('p', { class: 'error', role: 'alert', hidden: true, 'data-role': 'import-error' }),
      cards: new Map(), // model id → PullCard of its imports
      cardList: h('div', { class: 'cards' }),
    };
    row.btn.addEventListener('click', () => this.import(row));
    const actions = h(
      'td',
      { class: 'row-actions', 'data-label': 'Import as' },
      h('div', { class: 'import' }, h('label', { for: selectId, class: 'visually-hidden' }, `Import ${e.id} as (dir: a directory of files; qcow2: a disk image)`), row.format, row.btn),
      row.error,
    );
    row.tr = h('tr', { 'data-entry': e.id }, head, c.task, c.format, c.size, c.downloads, c.likes, c.updated, c.installed, actions);
    row.pullTr = h('tr', { class: 'pull-row', 'data-pulls': e.id, hidden: true }, h('td', { class: 'pull-cell', colspan: '9' }, row.cardList));
    row.fill = (en) => {
      row.entry = en;
      head.replaceChildren(...modelCell(en).filter(Boolean), license, note);
      setText(license, en.license ? `license: ${en.license}` : 'license not stated');
      setText(note, en.error ? `Last index: ${en.error}` : '');
      show(note, Boolean(en.error));
      setText(c.task, en.task || '—');
      setText(c.format, formatText(en));
      setText(c.size, en.size_bytes > 0 ? bytes(en.size_bytes) : '—');
      c.size.title = en.files ? `${en.files} files, what an import downloads` : '';
      setText(c.downloads, count(en.downloads));
      setText(c.likes, count(en.likes));
      const day = en.last_modified ? new Date(en.last_modified) : null;
      if (day && !Number.isNaN(day.getTime())) {
        c.updated.replaceChildren(h('time', { datetime: en.last_modified, title: when(en.last_modified) }, day.toLocaleDateString()));
      } else {
        setText(c.updated, '—');
      }
      const installed = en.installed || [];
      row.tr.dataset.installed = String(!en.metadata_only);
      if (en.metadata_only) {
        c.installed.replaceChildren(h('span', { class: 'muted' }, 'metadata only'));
      } else {
        // One child: on phones each cell is a two-column grid.
        c.installed.replaceChildren(h('div', {}, h('strong', {}, 'installed'), ...installed.map((id) => h('div', { class: 'sub' }, h('code', { text: id })))));
      }
    };
    return row;
  }

  /** updatePulls shows, under each row, the pulls of its imports: those
   * started here, and running ones started elsewhere (the CLI). */
  updatePulls() {
    for (const row of this.rows.values()) {
      const started = this.started.get(row.entry.id) || new Set();
      const ids = new Set([...started, ...FORMATS.map(([f]) => importID(row.entry, f))]);
      for (const id of ids) {
        const st = this.store.get(id);
        if (!st) continue;
        let card = row.cards.get(id);
        if (!card) {
          if (isFinal(st) && !started.has(id)) continue;
          card = new PullCard(this.store, id);
          row.cards.set(id, card);
          row.cardList.append(card.el);
        }
        card.update(st);
      }
      show(row.pullTr, row.cards.size > 0);
    }
  }

  async import(row) {
    if (isBusy(row.btn)) return;
    const e = row.entry;
    const format = row.format.value;
    busy(row.btn, true);
    show(row.error, false);
    try {
      const st = await mutate('POST', modelPath(importRef(e, format), '/pull'));
      if (!this.started.has(e.id)) this.started.set(e.id, new Set());
      this.started.get(e.id).add(st.model_id);
      this.store.put(st);
      this.updatePulls();
      announce(st.existing ? `${st.model_id} is already being pulled.` : `Import of ${e.id} as ${format === 'qcow2' ? 'a qcow2 image' : 'a directory'} started.`);
    } catch (err) {
      setText(row.error, err.message);
      show(row.error, true);
    } finally {
      busy(row.btn, false);
    }
  }
}

/**
 * CatalogPicks is the Models view's "Available from the catalog": the
 * first few catalog entries, in the Catalog view's order, that are not
 * installed, each with Pull (an import as a directory). Their pulls show
 * in the Pulls list above like any other.
 */
export class CatalogPicks {
  constructor(store, models, catalog) {
    this.store = store;
    this.models = models;
    this.section = $('#available');
    this.help = $('#available-help');
    this.body = $('#available-body');
    this.rows = new Map();
    this.order = catalog.order();
    this.asked = 0;
    models.onChange(() => this.refresh());
    catalog.onOrder((o) => {
      this.order = o;
      this.refresh();
    });
    store.subscribe(() => this.updateRowPulls());
  }

  async refresh() {
    const n = ++this.asked;
    // Installed entries are at most as many as installed models: asking
    // for that many more is enough to find PICKS that are not.
    const p = new URLSearchParams({ sort: this.order.sort, direction: this.order.direction, limit: String(PICKS + this.models.models.length) });
    let list;
    try {
      list = await request('GET', `/api/catalog?${p}`);
    } catch {
      // The Catalog view says what is wrong; this list is optional.
      return;
    }
    if (n !== this.asked) return;
    const picks = (list.entries || []).filter((e) => e.metadata_only).slice(0, PICKS);
    const said = `Not installed yet, ${orderText(this.order.sort, this.order.direction)}. `;
    if (this.help.firstChild?.textContent !== said) {
      this.help.replaceChildren(said, 'Pull imports one as a directory; the ', h('a', { href: '#/catalog' }, 'Catalog'), ' has search, filters and qcow2 images.');
    }
    this.render(picks);
  }

  render(picks) {
    syncRows(this.body, this.rows, picks, (e) => this.row(e));
    show(this.section, picks.length > 0);
    this.updateRowPulls();
  }

  row(e) {
    const cell = (label) => h('td', { 'data-label': label });
    const head = h('th', { scope: 'row', 'data-label': 'Model' });
    const c = { task: cell('Task'), format: cell('Format'), size: cell('Size'), downloads: cell('Downloads') };
    const row = {
      entry: e,
      btn: h('button', { type: 'button', 'data-role': 'pull', 'aria-label': `Pull ${e.id} from the catalog` }, 'Pull'),
      status: h('span', { class: 'row-status', 'data-role': 'row-status' }),
      error: h('p', { class: 'error', role: 'alert', hidden: true }),
    };
    row.btn.addEventListener('click', () => pullFromRow(this.store, importRef(row.entry, 'dir'), row, row.entry.id));
    row.tr = h(
      'tr',
      { 'data-entry': e.id },
      head, c.task, c.format, c.size, c.downloads,
      h('td', { class: 'row-actions', 'data-label': 'Actions' }, row.btn, row.status, row.error),
    );
    row.fill = (en) => {
      row.entry = en;
      head.replaceChildren(...modelCell(en).filter(Boolean));
      setText(c.task, en.task || '—');
      setText(c.format, formatText(en));
      setText(c.size, en.size_bytes > 0 ? bytes(en.size_bytes) : '—');
      setText(c.downloads, count(en.downloads));
    };
    return row;
  }

  updateRowPulls() {
    showRowPulls(this.rows, this.store, (_, row) => importID(row.entry, 'dir'));
  }
}
