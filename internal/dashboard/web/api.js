// The hal0-apid client of the dashboard: JSON over fetch on this page's own
// origin, server-sent events for live state, and the bearer token that
// changes over TCP need.
//
// The token is typed by the person using the page and kept in
// sessionStorage: it lasts as long as the tab, is never written to disk by
// the page, and is not shared with other tabs or sites. It is sent only
// with requests that change something, the only ones hal0-apid checks it
// on, so reads never carry it.

const TOKEN_KEY = 'hal0.apiToken';

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return ''; // storage disabled: the page still reads, and asks again
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: nothing to keep */
  }
  for (const fn of tokenListeners) fn(Boolean(token));
}

const tokenListeners = new Set();

/** onTokenChange calls fn(hasToken) whenever the token is set or cleared. */
export function onTokenChange(fn) {
  tokenListeners.add(fn);
}

/** APIError is hal0-apid's error envelope, or a transport failure (status 0). */
export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** modelPath builds /api/models/{id}{rest}; ids contain "/" and ":", which
 * the API wants escaped. */
export function modelPath(id, rest = '') {
  return `/api/models/${encodeURIComponent(id)}${rest}`;
}

export function slotPath(name, rest = '') {
  return `/api/slots/${encodeURIComponent(name)}${rest}`;
}

/** request sends one API call and returns the decoded JSON body. */
export async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, cache: 'no-store', credentials: 'same-origin', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const token = getToken();
  if (token && method !== 'GET' && method !== 'HEAD') headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new APIError(0, 'unreachable', `hal0-apid did not answer (${err.message}). Is it running?`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const e = data && data.error;
    throw new APIError(res.status, (e && e.code) || `http_${res.status}`, (e && e.message) || `${res.status} ${res.statusText}`);
  }
  return data;
}

let tokenPrompt = null;
let pendingPrompt = null;

/** setTokenPrompt installs fn(message) → Promise<boolean>, which asks for
 * the token and resolves true once one was saved. */
export function setTokenPrompt(fn) {
  tokenPrompt = fn;
}

function askToken(message) {
  // Two buttons pressed before the token was entered share one dialog.
  if (!pendingPrompt) {
    pendingPrompt = Promise.resolve(tokenPrompt(message)).finally(() => {
      pendingPrompt = null;
    });
  }
  return pendingPrompt;
}

/**
 * mutate is request for calls that change something. A 401 asks for the
 * token and sends the same call again once one is saved, so the click that
 * met the 401 is not lost; a wrong token asks again, and closing the
 * dialog gives up with the API's own message.
 */
export async function mutate(method, path, body) {
  for (;;) {
    try {
      return await request(method, path, body);
    } catch (err) {
      if (!(err instanceof APIError) || err.status !== 401 || !tokenPrompt) throw err;
      if (!(await askToken(err.message))) throw err;
    }
  }
}

/**
 * stream follows a server-sent event stream. onData gets each event's JSON;
 * onEnd(reason) runs once when the stream is closed for good ("closed" by
 * the caller, or "failed" when the server refused it). Transient network
 * failures are left to EventSource, which reconnects by itself.
 * Returns a function that closes the stream.
 */
export function stream(path, eventName, onData, onEnd) {
  const es = new EventSource(path);
  let ended = false;
  const end = (reason) => {
    if (ended) return;
    ended = true;
    es.close();
    if (onEnd) onEnd(reason);
  };
  es.addEventListener(eventName, (ev) => {
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      return; // a malformed event is skipped; the next one replaces it
    }
    onData(data, end);
  });
  es.addEventListener('error', () => {
    // CLOSED means the browser gave up (an HTTP error or a wrong type);
    // CONNECTING means it is retrying on its own.
    if (es.readyState === EventSource.CLOSED) end('failed');
  });
  return () => end('closed');
}
