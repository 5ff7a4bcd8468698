// The Slots view: each slot's state, live from GET /api/slots/{name}/events,
// its model, a Swap control, load and unload, and the slot unit's journal
// (GET /api/slots/{name}/logs, followed while the Logs panel is open).
//
// hal0-apid only records requests (request.json); hal0-slotd carries them
// out and writes the states the stream reports. So a Swap answers at once
// with the request, and the card then follows the states as they come:
// unloading, starting, warming, ready (or pulling first, when the model is
// not installed).

import { mutate, request, slotPath, stream } from './api.js';
import { $, announce, busy, h, isBusy, keepFocus, setText, show } from './dom.js';
import { percent, when } from './format.js';
import { statsLine } from './pulls.js';

const OTHER = '\u0000other'; // the "another reference" choice of the picker

const LOADED = new Set(['ready', 'serving', 'idle']);
// States on the way somewhere: hal0-apid refuses a new model until the
// slot gets there (409 slot.illegal_transition).
const MOVING = new Set(['pulling', 'starting', 'warming', 'unloading']);

let seq = 0;

class SlotCard {
  constructor(slot, models) {
    this.name = slot.name;
    this.models = models;
    const n = ++seq;
    const id = (s) => `slot-${n}-${s}`;
    this.badge = h('span', { class: 'badge', 'data-role': 'state' });
    const fact = (label, role) => {
      const dd = h('dd', { 'data-role': role });
      return [h('dt', {}, label), dd];
    };
    const [modelDt, modelDd] = fact('Model', 'model');
    const [targetDt, targetDd] = fact('Bringing in', 'target');
    const [backendDt, backendDd] = fact('Backend', 'backend');
    const [unitDt, unitDd] = fact('Unit', 'unit');
    const [updDt, updDd] = fact('Updated', 'updated');
    this.f = { modelDd, targetDd, targetDt, backendDd, unitDd, updDd };
    this.message = h('p', { class: 'message', 'data-role': 'message' });
    this.pending = h('p', { class: 'note', 'data-role': 'pending', hidden: true });
    this.refused = h('p', { class: 'error', 'data-role': 'refused', hidden: true });
    this.stateError = h('p', { class: 'error', hidden: true });
    this.pullBar = h('progress', { max: '100', 'aria-label': `Pull progress of slot ${slot.name}` });
    this.pullStats = h('p', { class: 'stats' });
    this.pull = h('div', { class: 'slot-pull', hidden: true }, this.pullBar, this.pullStats);

    this.select = h('select', { id: id('model'), 'data-role': 'swap-model' });
    this.other = h('input', {
      id: id('other'),
      type: 'text',
      autocomplete: 'off',
      autocapitalize: 'none',
      spellcheck: 'false',
      placeholder: 'org/name:Q4_K_M',
    });
    this.otherField = h('div', { class: 'field', hidden: true }, h('label', { for: id('other') }, 'Model reference'), this.other);
    this.swapBtn = h('button', { type: 'submit', class: 'primary', 'data-role': 'swap', 'aria-describedby': id('wait') }, 'Swap');
    this.wait = h('p', { id: id('wait'), class: 'note', hidden: true }, 'Another model can be asked for once the slot is ready, offline or in error.');
    this.form = h(
      'form',
      { class: 'swap', 'data-role': 'swap-form' },
      h('div', { class: 'field' }, h('label', { for: id('model') }, 'Swap to'), this.select),
      this.otherField,
      this.swapBtn,
      this.wait,
    );
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.swap();
    });
    this.select.addEventListener('change', () => {
      show(this.otherField, this.select.value === OTHER);
      if (this.select.value === OTHER) this.other.focus();
    });
    this.loadBtn = h('button', { type: 'button', onclick: () => this.act(this.loadBtn, 'load', {}) }, 'Load default');
    this.unloadBtn = h('button', { type: 'button', onclick: () => this.act(this.unloadBtn, 'unload', undefined) }, 'Unload');
    this.unloadBtn.setAttribute('aria-label', `Unload slot ${slot.name}`);
    this.result = h('p', { class: 'note', 'data-role': 'result', hidden: true });
    this.error = h('p', { class: 'error', role: 'alert', 'data-role': 'action-error', hidden: true });
    this.live = h('p', { class: 'note', hidden: true });

    this.logs = new SlotLogs(slot.name, id);
    const logs = this.logs.el;

    this.title = h('h2', { id: id('name'), tabindex: '-1' }, slot.name);
    this.el = h(
      'article',
      { class: 'card slot-card', 'data-slot': slot.name, 'aria-labelledby': id('name') },
      h('div', { class: 'card-head' }, this.title, this.badge),
      this.message,
      this.stateError,
      this.pending,
      this.refused,
      this.pull,
      h('dl', { class: 'facts' }, modelDt, modelDd, targetDt, targetDd, backendDt, backendDd, unitDt, unitDd, updDt, updDd),
      this.form,
      h('div', { class: 'actions' }, this.loadBtn, this.unloadBtn),
      this.result,
      this.error,
      this.live,
      logs,
    );
    this.update(slot);
  }

  update(s) {
    // Unload hides itself once the slot unloads; its focus goes to the
    // model picker rather than to the top of the page.
    keepFocus(this.el, () => this.fill(s), [this.select, this.title]);
  }

  fill(s) {
    const prev = this.slot;
    const prevState = prev && prev.state;
    this.slot = s;
    this.el.dataset.state = s.state;
    this.badge.dataset.state = s.state;
    setText(this.badge, s.state);
    setText(this.f.modelDd, s.model_id || '—');
    setText(this.f.targetDd, s.target || '');
    show(this.f.targetDt, Boolean(s.target));
    show(this.f.targetDd, Boolean(s.target));
    setText(this.f.backendDd, `${s.backend} on 127.0.0.1:${s.port}${s.role ? ` (${s.role})` : ''}${s.enabled ? '' : ', disabled'}`);
    setText(this.f.unitDd, s.unit);
    setText(this.f.updDd, when(s.updated_at) || '—');
    setText(this.message, s.message || '');
    show(this.message, Boolean(s.message));
    setText(this.stateError, s.state_error ? `The slot's state file cannot be read: ${s.state_error}` : '');
    show(this.stateError, Boolean(s.state_error));

    if (s.pending) {
      const what = s.pending.model ? `${s.pending.kind} to ${s.pending.model}` : s.pending.kind;
      setText(this.pending, `Waiting for hal0-slotd to take up the request: ${what} (asked ${when(s.pending.created_at)}). If it stays here, check that hal0-slotd runs: hal0 service status.`);
    }
    show(this.pending, Boolean(s.pending));
    // Once hal0-slotd took the request up, the states tell the rest.
    if (prev && prev.pending && !s.pending) show(this.result, false);
    const lr = s.last_request;
    const refused = lr && lr.outcome === 'refused';
    setText(this.refused, refused ? `hal0-slotd refused the last request (${lr.kind}${lr.model ? ` ${lr.model}` : ''}): ${lr.error}` : '');
    show(this.refused, Boolean(refused));

    if (s.state === 'pulling' && s.pull) {
      const p = percent(s.pull.bytes_done, s.pull.bytes_total);
      if (p === null) this.pullBar.removeAttribute('value');
      else this.pullBar.value = p;
      setText(this.pullStats, statsLine({ ...s.pull, model_id: s.target }));
    }
    show(this.pull, s.state === 'pulling' && Boolean(s.pull));

    const loaded = LOADED.has(s.state);
    // The API refuses what the state machine does not allow, with a 409
    // that says why; the controls only hide what can never work now.
    this.form.hidden = !s.enabled;
    const moving = MOVING.has(s.state);
    busy(this.swapBtn, moving);
    show(this.wait, moving);
    this.loadBtn.hidden = !(s.enabled && (s.state === 'offline' || s.state === 'error') && s.default_model);
    if (s.default_model) {
      setText(this.loadBtn, `Load ${s.default_model}`);
      this.loadBtn.setAttribute('aria-label', `Load ${s.default_model} on slot ${s.name}`);
    }
    this.unloadBtn.hidden = s.state === 'offline' || s.state === 'unloading' || s.state === 'unknown';
    // A slot that serves nothing is asked to load the chosen model: the
    // same outcome as a swap there, under the name the CLI uses for it.
    const verb = loaded ? 'Swap' : 'Load';
    setText(this.swapBtn, verb);
    this.swapBtn.setAttribute('aria-label', `${verb} the model of slot ${s.name}`);
    this.fillModels();
    if (prevState && prevState !== s.state) {
      announce(`Slot ${s.name} is ${s.state}${s.model_id ? ` with ${s.model_id}` : ''}.`);
    }
  }

  /** fillModels offers the installed models the slot's backend can serve,
   * keeping the current choice. */
  fillModels(models) {
    if (models) this.models = models;
    const s = this.slot;
    const keep = this.select.value;
    const ids = this.models
      .filter((m) => (s.backend === 'flm' ? m.source === 'flm' || m.source === 'local' : m.source !== 'flm'))
      .map((m) => m.id)
      .filter((mid) => mid !== s.model_id);
    const sig = JSON.stringify(ids);
    if (sig === this.sig) return;
    this.sig = sig;
    const opts = ids.map((mid) => h('option', { value: mid }, mid));
    if (!ids.length) opts.push(h('option', { value: '' }, 'no other installed model'));
    opts.push(h('option', { value: OTHER }, 'Another reference…'));
    this.select.replaceChildren(...opts);
    if ([...this.select.options].some((o) => o.value === keep)) this.select.value = keep;
    show(this.otherField, this.select.value === OTHER);
  }

  async swap() {
    if (isBusy(this.swapBtn)) return;
    const model = this.select.value === OTHER ? this.other.value.trim() : this.select.value;
    if (!model) {
      this.showError('Choose a model to swap to.');
      return;
    }
    const kind = LOADED.has(this.slot.state) ? 'swap' : 'load';
    await this.act(this.swapBtn, kind, { model });
  }

  showError(msg) {
    setText(this.error, msg);
    show(this.error, Boolean(msg));
  }

  async act(btn, kind, body) {
    if (isBusy(btn)) return;
    busy(btn, true);
    this.showError('');
    show(this.result, false);
    try {
      const acc = await mutate('POST', slotPath(this.name, `/${kind}`), body);
      this.update(acc);
      const what = acc.model ? `${kind} to ${acc.model}` : kind;
      const msg = acc.next === acc.state ? `Nothing to do: slot ${this.name} already serves ${acc.model}.` : `Asked hal0-slotd to ${what}; next state: ${acc.next}.`;
      setText(this.result, msg);
      show(this.result, true);
      announce(msg);
    } catch (err) {
      this.showError(err.message);
    } finally {
      // The swap button stays marked while the slot is on its way.
      busy(btn, btn === this.swapBtn && MOVING.has(this.slot.state));
    }
  }

  streamEnded() {
    setText(this.live, 'Live updates stopped (the slot may have been removed, or hal0-apid restarted). Open the Slots view again to reconnect.');
    show(this.live, true);
  }
}

export class SlotsView {
  constructor(modelsTable) {
    this.modelsTable = modelsTable;
    this.list = $('#slots-list');
    this.empty = $('#slots-empty');
    this.status = $('#slots-status');
    this.cards = new Map();
    this.stops = [];
    this.active = false;
    modelsTable.onChange((models) => {
      for (const c of this.cards.values()) c.fillModels(models);
    });
  }

  /** show lists the slots and follows each one's stream while the view is
   * visible; streams are closed when it is left (see hide). */
  async show() {
    this.active = true;
    this.closeStreams();
    let slots;
    try {
      slots = await request('GET', '/api/slots');
      show(this.status, false);
    } catch (err) {
      setText(this.status, `Could not list the slots: ${err.message}`);
      show(this.status, true);
      return;
    }
    if (!this.active) return;
    const names = new Set(slots.map((s) => s.name));
    for (const [name, card] of this.cards) {
      if (!names.has(name)) {
        card.el.closest('li').remove();
        this.cards.delete(name);
      }
    }
    for (const s of slots) {
      let card = this.cards.get(s.name);
      if (!card) {
        card = new SlotCard(s, this.modelsTable.models);
        this.cards.set(s.name, card);
        this.list.append(h('li', {}, card.el));
      } else {
        card.update(s);
        show(card.live, false);
      }
      this.stops.push(
        stream(slotPath(s.name, '/events'), 'slot', (v) => card.update(v), (reason) => {
          if (reason === 'failed') card.streamEnded();
        }),
      );
    }
    show(this.empty, slots.length === 0);
  }

  hide() {
    this.active = false;
    this.closeStreams();
  }

  closeStreams() {
    for (const stop of this.stops) stop();
    this.stops = [];
  }
}

// SlotLogs is the Logs panel of a slot card: closed, it costs nothing;
// opened, it shows the newest journal lines of hal0-slot@NAME.service and
// follows new ones until it is closed again.
const LOG_LINES = 200;
const LOG_KEEP = 1000;

class SlotLogs {
  constructor(name, id) {
    this.name = name;
    this.stop = null;
    this.cursor = '';
    this.out = h('pre', { class: 'log-lines', role: 'log', 'aria-live': 'off', tabindex: '0', 'data-role': 'log-lines', 'aria-label': `Journal of slot ${name}` });
    this.status = h('p', { class: 'note', 'data-role': 'log-status' });
    this.fallback = h(
      'p',
      { class: 'note', hidden: true, 'data-role': 'log-fallback' },
      'On the machine: ',
      h('code', { 'data-role': 'logs-command', text: `hal0 slot logs ${name} -f` }),
    );
    this.el = h(
      'details',
      { class: 'logs', 'data-role': 'logs' },
      h('summary', { id: id('logs') }, 'Logs'),
      this.status,
      this.out,
      this.fallback,
    );
    this.el.addEventListener('toggle', () => (this.el.open ? this.open() : this.close()));
  }

  async open() {
    this.out.textContent = '';
    this.cursor = '';
    setText(this.status, 'Loading\u2026');
    show(this.fallback, false);
    let res;
    try {
      res = await request('GET', slotPath(this.name, `/logs?lines=${LOG_LINES}`));
    } catch (err) {
      setText(this.status, err.message);
      show(this.fallback, true);
      return;
    }
    if (!this.el.open) return;
    this.append(res.entries);
    setText(this.status, `${res.unit}, following`);
    const after = this.cursor ? `&after=${encodeURIComponent(this.cursor)}` : '';
    this.stop = stream(
      slotPath(this.name, `/logs?follow=1${after}`),
      'log',
      (e) => this.append([e]),
      (why) => {
        if (why === 'failed') setText(this.status, 'The journal stream stopped; close and open Logs to try again.');
      },
    );
  }

  close() {
    if (this.stop) this.stop();
    this.stop = null;
  }

  append(entries) {
    if (!entries.length) {
      if (!this.out.textContent) this.out.textContent = '(no lines yet)\n';
      return;
    }
    if (this.out.textContent === '(no lines yet)\n') this.out.textContent = '';
    const atEnd = this.out.scrollTop + this.out.clientHeight >= this.out.scrollHeight - 4;
    const frag = document.createDocumentFragment();
    for (const e of entries) {
      const t = new Date(e.time);
      const line = h('span', { class: e.priority <= 3 ? 'log-err' : e.priority === 4 ? 'log-warn' : '' });
      line.textContent = `${isNaN(t) ? '' : t.toLocaleTimeString()} ${e.message}\n`;
      frag.append(line);
      this.cursor = e.cursor || this.cursor;
    }
    this.out.append(frag);
    while (this.out.childNodes.length > LOG_KEEP) this.out.firstChild.remove();
    if (atEnd) this.out.scrollTop = this.out.scrollHeight;
  }
}
