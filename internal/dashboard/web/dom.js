// Small DOM helpers. Everything the API sends (model ids, error messages,
// slot messages) reaches the page as text nodes or attribute values, never
// as markup: a hostile repo name cannot inject anything, and the CSP
// (script-src 'self') would block it anyway.

/**
 * h builds an element. attrs: "class", "text", "on<event>" (a listener),
 * boolean true (an empty attribute), false/null/undefined (left out), or a
 * string. children: nodes, strings, or arrays of them; null is skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k === 'text') el.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** setText changes text only when it differs, so screen readers that
 * follow a node are not told the same thing again on every event. */
export function setText(el, text) {
  const t = text ?? '';
  if (el.textContent !== t) el.textContent = t;
}

/** show toggles the hidden attribute. */
export function show(el, on) {
  el.hidden = !on;
}

/** $ finds one element or throws: a missing id is a bug in index.html. */
export function $(sel, root = document) {
  const el = root.querySelector(sel);
  if (!el) throw new Error(`dashboard: ${sel} is missing`);
  return el;
}

let announceTimer = 0;

/**
 * announce reads a short message to screen-reader users through the polite
 * live region in index.html. The region is emptied first and refilled on
 * the next frame, so that the same words said twice (two pulls completing)
 * are announced twice.
 */
export function announce(msg) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  cancelAnimationFrame(announceTimer);
  announceTimer = requestAnimationFrame(() => { region.textContent = msg; });
}

/** safeHTTPURL returns url if it is an absolute http(s) URL, else ''. Links
 * built from server text (a license page in an error message) must never
 * become javascript: or data: URLs. */
export function safeHTTPURL(url) {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : '';
  } catch {
    return '';
  }
}

/** busy marks a button as not available for now without disabling it: a
 * disabled button drops the keyboard focus (Chromium blurs it), and the
 * person who pressed it would land back at the top of the page. Click
 * handlers check isBusy. */
export function busy(btn, on) {
  if (on) btn.setAttribute('aria-disabled', 'true');
  else btn.removeAttribute('aria-disabled');
}

export function isBusy(btn) {
  return btn.getAttribute('aria-disabled') === 'true';
}

/**
 * keepFocus runs update, which may hide or remove the element that has the
 * keyboard focus inside container (a Cancel button once the pull is
 * cancelled). The focus then moves to the first of candidates still shown,
 * instead of falling back to the document.
 */
export function keepFocus(container, update, candidates) {
  const had = document.activeElement;
  const inside = had && had !== document.body && container.contains(had);
  update();
  if (!inside || (had.isConnected && !had.closest('[hidden]'))) return;
  for (const c of candidates) {
    if (c && c.isConnected && !c.closest('[hidden]')) {
      c.focus();
      return;
    }
  }
}

/**
 * syncRows makes body show one row per item, in the order of items,
 * reusing the rows built earlier: a focused button keeps its focus when
 * the row it is in is updated. rows maps item id → row; make(item) builds
 * a row, row.fill(item) updates it; elems(row) lists the row's elements
 * in body (by default its tr).
 */
export function syncRows(body, rows, items, make, elems = (row) => [row.tr]) {
  const keep = new Set();
  let prev = null;
  for (const it of items) {
    keep.add(it.id);
    let row = rows.get(it.id);
    if (!row) {
      row = make(it);
      rows.set(it.id, row);
    }
    row.fill(it);
    for (const el of elems(row)) {
      if (prev ? prev.nextSibling !== el : body.firstChild !== el) {
        if (prev) prev.after(el);
        else body.prepend(el);
      }
      prev = el;
    }
  }
  for (const [id, row] of rows) {
    if (!keep.has(id)) {
      for (const el of elems(row)) el.remove();
      rows.delete(id);
    }
  }
}
