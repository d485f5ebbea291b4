// Shared by both elements: the API base, the reader's token, requests, texts, events.

const SCRIPT_ORIGIN = new URL(import.meta.url).origin;

/** The tally base URL of an element: its `api` attribute, else where this script came from. */
export function apiBase(el) {
  return (el.getAttribute('api') || SCRIPT_ORIGIN).replace(/\/+$/, '');
}

/** The reader's token: `window.tally.token()` wins over the `token` attribute. */
export async function tokenOf(el) {
  const t = globalThis.tally && globalThis.tally.token;
  if (typeof t === 'function') {
    try {
      return (await t()) || null;
    } catch {
      return null;
    }
  }
  return el.getAttribute('token') || null;
}

/** A problem object (RFC 9457), thrown by `request` for every answer that is not 2xx. */
export class Problem extends Error {
  constructor(p) {
    super(p.detail || p.title || 'Request failed');
    this.problem = p;
  }
}

/** Calls tally; resolves to the JSON body (null for 204), throws a `Problem`. */
export async function request(el, method, path, body, extraHeaders) {
  const headers = { ...(extraHeaders || {}) };
  const token = await tokenOf(el);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(apiBase(el) + '/api/v1' + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
    });
  } catch (e) {
    throw new Problem({ status: 0, code: 'network_error', title: 'Network error', detail: String(e.message || e) });
  }
  if (res.status === 204) return null;
  let json = null;
  try {
    json = await res.json();
  } catch {
    json = null;
  }
  if (!res.ok) throw new Problem(json && json.code ? json : { status: res.status, code: 'http_' + res.status, title: res.statusText });
  return json;
}

export const enc = encodeURIComponent;

/** `lang` attribute: `de`, else `en`. */
export function langOf(el) {
  return el.getAttribute('lang') === 'de' ? 'de' : 'en';
}

export function emit(el, type, detail) {
  el.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
}

/** Creates an element: h('button', {type: 'button', onclick}, 'text', child…). Text is always text. */
export function h(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k in e && typeof v !== 'string') e[k] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return e;
}

/** Colours, font and spacing from custom properties, light and dark. */
export const BASE_CSS = `
:host{display:block;font-family:var(--tally-font,system-ui,sans-serif);font-size:var(--tally-font-size,1rem);
--_fg:var(--tally-fg,#1b1b1f);--_bg:var(--tally-bg,#ffffff);--_muted:var(--tally-muted,#55555f);
--_accent:var(--tally-accent,#0b57d0);--_on-accent:var(--tally-on-accent,#ffffff);--_border:var(--tally-border,#8a8a94);
--_star:var(--tally-star,#a15c00);--_danger:var(--tally-danger,#b3261e);--_radius:var(--tally-radius,6px);
color:var(--_fg);background:var(--_bg);line-height:1.45}
:host([theme=dark]){--_fg:var(--tally-fg,#ececf1);--_bg:var(--tally-bg,#16161a);--_muted:var(--tally-muted,#b4b4be);
--_accent:var(--tally-accent,#8ab4f8);--_on-accent:var(--tally-on-accent,#0b0b0f);--_border:var(--tally-border,#77777f);
--_star:var(--tally-star,#f6c04e);--_danger:var(--tally-danger,#f2b8b5)}
@media (prefers-color-scheme:dark){:host(:not([theme=light]):not([theme=dark])){--_fg:var(--tally-fg,#ececf1);
--_bg:var(--tally-bg,#16161a);--_muted:var(--tally-muted,#b4b4be);--_accent:var(--tally-accent,#8ab4f8);
--_on-accent:var(--tally-on-accent,#0b0b0f);--_border:var(--tally-border,#77777f);--_star:var(--tally-star,#f6c04e);
--_danger:var(--tally-danger,#f2b8b5)}}
*{box-sizing:border-box}
.vh{position:absolute!important;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}
button{font:inherit;cursor:pointer;border-radius:var(--_radius);border:1px solid var(--_accent);background:var(--_accent);
color:var(--_on-accent);padding:.3em .8em}
button.link{background:transparent;color:var(--_accent);border-color:transparent;padding:.2em .4em;text-decoration:underline}
button[aria-pressed=true]{font-weight:700}
button:disabled{opacity:.6;cursor:default}
:focus-visible{outline:3px solid var(--_accent);outline-offset:2px}
textarea,select,input{font:inherit;color:var(--_fg);background:var(--_bg);border:1px solid var(--_border);border-radius:var(--_radius);padding:.35em}
textarea{width:100%;min-height:4.5em;resize:vertical}
.muted{color:var(--_muted)}
.err{color:var(--_danger)}
`;
