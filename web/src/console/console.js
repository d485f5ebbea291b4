// The moderation console at /console/: queues as tabs, keyboard work, bulk decisions, log,
// bans and (for admins) the settings. The token lives in sessionStorage only.
const API = '/api/v1';
const QUEUES = ['pending', 'flagged', 'rejected', 'spam', 'approved'];
const LABEL = { pending: 'Pending', flagged: 'Flagged', rejected: 'Rejected', spam: 'Spam', approved: 'Approved' };
const ACTIONS = [['approve', 'Approve', 'a'], ['reject', 'Reject', 'r'], ['spam', 'Spam', 's']];
// After a dropped stream, reconnect this much later (resuming with Last-Event-ID).
const RETRY_MS = 3000;
const KEY = 'tally.console.token';

const app = document.getElementById('app');
const who = document.getElementById('who');
let token = null;
let claims = {};
let stats = {};
let current = 'pending';
let items = new Map(); // comment id → { item, el }
let cursor = null;
const selected = new Set();
let live = null; // AbortController of the live stream

function h(tag, props, ...children) {
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

class Problem extends Error {
  constructor(p) {
    super(p.detail || p.title || 'request failed');
    this.problem = p;
  }
}

async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 204) return null;
  const json = await res.json().catch(() => null);
  if (!res.ok) throw new Problem(json || { status: res.status, title: res.statusText, code: 'http_' + res.status });
  return json;
}

function decodeClaims(jwt) {
  try {
    const b = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(b))));
  } catch {
    return {};
  }
}

const status = h('p', { role: 'status', class: 'muted', id: 'status' });
function say(text) {
  status.textContent = text;
}

function fmt(iso) {
  return iso ? new Date(iso).toLocaleString('en-GB', { dateStyle: 'medium', timeStyle: 'short' }) : '';
}

// ---- sign-in -------------------------------------------------------------------------

function takeToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY);
}

function signInForm(message) {
  const box = h('input', { type: 'password', id: 'tok', autocomplete: 'off', required: true });
  app.replaceChildren(
    message ? h('p', { class: 'warn', role: 'alert' }, message) : null,
    h('form', {
      class: 'grid',
      onsubmit: (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(KEY, box.value.trim());
        start();
      },
    }, h('label', { for: 'tok' }, 'Moderator token'), box, h('span'), h('button', { type: 'submit' }, 'Sign in')),
  );
  box.focus();
}

function signOut() {
  sessionStorage.removeItem(KEY);
  stopFollowing();
  who.replaceChildren();
  signInForm();
}

async function start() {
  token = takeToken();
  if (!token) return signInForm();
  claims = decodeClaims(token);
  const role = claims.role || 'reader';
  if (role !== 'moderator' && role !== 'admin') {
    sessionStorage.removeItem(KEY);
    return signInForm(`This token (role ${role}) has no moderator role, so there is no queue to show. Sign in with a moderator token.`);
  }
  try {
    stats = await call('GET', '/moderation/stats');
  } catch (e) {
    sessionStorage.removeItem(KEY);
    const p = e.problem || {};
    return signInForm(p.status === 403 ? 'This token has no moderator role, so there is no queue to show.' : `Cannot sign in: ${e.message}`);
  }
  who.replaceChildren(`Signed in as ${claims.name || claims.sub} (${role}) `,
    h('button', { type: 'button', class: 'plain', onclick: signOut }, 'Sign out'));
  layout();
  follow();
}

// ---- live updates --------------------------------------------------------------------

function stopFollowing() {
  if (live) live.abort();
  live = null;
}

// Reads /moderation/events with fetch (EventSource cannot send the Authorization
// header): `stats` renames the tabs, `item` says when the queue on screen changed.
// A dropped stream reconnects after RETRY_MS and resumes with Last-Event-ID.
function follow() {
  stopFollowing();
  const ctl = new AbortController();
  live = ctl;
  let lastId = null;
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' };
        if (lastId) headers['Last-Event-ID'] = lastId;
        const res = await fetch(API + '/moderation/events', { headers, signal: ctl.signal });
        if (!res.ok || !res.body) throw new Error(`stream refused (${res.status})`);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let end;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            let event = 'message';
            let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('id:')) lastId = line.slice(3).trim();
              else if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data += line.slice(5).trim();
            }
            if (data) onLive(event, JSON.parse(data));
          }
        }
      } catch {
        if (ctl.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  })();
}

function onLive(event, data) {
  if (event === 'stats') {
    stats = data;
    updateTabNames();
  } else if (event === 'item' && data.queue === current && data.change === 'entered' && !items.has(data.comment_id)) {
    say(`New in ${LABEL[current]}: reopen the tab to see it.`);
  }
}

// ---- layout and tabs -----------------------------------------------------------------

let tablist;
let panel;
const TABS = () => [...QUEUES, 'log', 'bans', ...(claims.role === 'admin' ? ['settings'] : [])];

function tabName(id) {
  if (LABEL[id]) return `${LABEL[id]} ${stats[id] ?? 0}`;
  return { log: 'Log', bans: 'Bans', settings: 'Settings' }[id];
}

function layout() {
  tablist = h('div', { role: 'tablist', 'aria-label': 'Queues and tools', onkeydown: tabKeys });
  for (const id of TABS()) {
    tablist.append(h('button', {
      role: 'tab', id: `tab-${id}`, type: 'button', 'aria-controls': 'panel', 'aria-selected': String(id === current),
      tabindex: id === current ? '0' : '-1', onclick: () => show(id),
    }, tabName(id)));
  }
  panel = h('section', { role: 'tabpanel', id: 'panel', 'aria-labelledby': `tab-${current}` });
  app.replaceChildren(tablist, status, panel);
  show(current);
}

function tabKeys(ev) {
  const tabs = [...tablist.querySelectorAll('[role=tab]')];
  const i = tabs.indexOf(document.activeElement);
  if (i < 0) return;
  let j = null;
  if (ev.key === 'ArrowRight') j = (i + 1) % tabs.length;
  else if (ev.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
  else if (ev.key === 'Home') j = 0;
  else if (ev.key === 'End') j = tabs.length - 1;
  if (j === null) return;
  ev.preventDefault();
  tabs[j].focus();
  show(tabs[j].id.slice(4));
}

function updateTabNames() {
  for (const q of QUEUES) {
    const tab = document.getElementById(`tab-${q}`);
    if (tab && tab.textContent !== tabName(q)) tab.textContent = tabName(q);
  }
}

async function refreshStats() {
  try {
    stats = await call('GET', '/moderation/stats');
    updateTabNames();
  } catch {
    // The live stream brings the next counts anyway.
  }
}

function show(id) {
  current = id;
  for (const tab of tablist.querySelectorAll('[role=tab]')) {
    const on = tab.id === `tab-${id}`;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
  }
  panel.setAttribute('aria-labelledby', `tab-${id}`);
  say('');
  if (QUEUES.includes(id)) return showQueue(id);
  if (id === 'log') return showLog();
  if (id === 'bans') return showBans();
  if (id === 'settings') return showSettings();
}

// ---- queues --------------------------------------------------------------------------

let list;
let moreBtn;

async function showQueue(q) {
  items = new Map();
  selected.clear();
  cursor = null;
  list = h('div', { class: 'items' });
  moreBtn = h('button', { type: 'button', hidden: true, onclick: () => loadQueue(q) }, 'Load more');
  panel.replaceChildren(
    h('p', { class: 'keys muted' }, 'Keys: j / k next / previous item, a approve, r reject, s spam, x select.'),
    h('div', { class: 'bulk' }, ACTIONS.map(([action, label]) =>
      h('button', { type: 'button', onclick: () => decideSelected(action) }, `${label} selected`)),
    h('span', { id: 'selcount', class: 'muted' }, '0 selected')),
    list, moreBtn);
  await loadQueue(q);
}

async function loadQueue(q) {
  const params = new URLSearchParams({ queue: q, limit: '50' });
  if (cursor) params.set('cursor', cursor);
  try {
    const res = await call('GET', `/moderation/queue?${params}`);
    if (current !== q) return;
    for (const it of res.items) addItem(it);
    cursor = res.next_cursor;
    moreBtn.hidden = !cursor;
    if (!items.size) list.replaceChildren(h('p', { class: 'muted' }, 'Nothing in this queue.'));
  } catch (e) {
    say(`Could not load the queue: ${e.message}`);
  }
}

function addItem(it) {
  const el = renderItem(it);
  items.set(it.comment.id, { item: it, el });
  list.append(el);
}

function renderItem(it, note) {
  const c = it.comment;
  const author = c.author ? `${c.author.name} (${c.author.id})` : 'guest';
  const hist = it.author_history || {};
  const reasons = (it.auto_moderation && it.auto_moderation.reasons) || [];
  const flags = Object.entries(it.flags || {}).map(([k, v]) => `${k} ${v}`).join(', ');
  const id = c.id;
  const art = h('article', { tabindex: '-1', 'data-id': id, 'aria-label': `Comment by ${c.author ? c.author.name : 'guest'}`, class: selected.has(id) ? 'selected' : '' },
    note ? h('p', { class: 'warn', role: 'alert' }, note) : null,
    h('p', { class: 'body' }, c.body),
    h('p', { class: 'meta muted' },
      `By ${author} · on ${c.article_id} · ${fmt(c.created_at)} · status ${c.status} · version ${it.version}`),
    h('p', { class: 'meta' }, `Author history: approved ${hist.approved ?? 0}, rejected ${hist.rejected ?? 0}, spam ${hist.spam ?? 0}`),
    reasons.length ? h('p', { class: 'meta' }, `Automatic reasons: ${reasons.join(', ')}`) : null,
    it.flag_count ? h('p', { class: 'meta' }, `Flags: ${it.flag_count}${flags ? ` (${flags})` : ''}`) : null,
    h('div', { class: 'actions' },
      h('label', {}, h('input', { type: 'checkbox', checked: selected.has(id), onchange: () => toggle(id) }), ' Select'),
      ACTIONS.map(([action, label]) => h('button', { type: 'button', onclick: () => decide(id, action) }, label))));
  return art;
}

function toggle(id) {
  if (selected.has(id)) selected.delete(id);
  else selected.add(id);
  const entry = items.get(id);
  if (entry) {
    entry.el.classList.toggle('selected', selected.has(id));
    const box = entry.el.querySelector('input[type=checkbox]');
    if (box) box.checked = selected.has(id);
  }
  document.getElementById('selcount').textContent = `${selected.size} selected`;
}

/** After a decision the item leaves the list (unless it still belongs in this queue); focus moves on. */
function settle(id, item) {
  const entry = items.get(id);
  if (!entry) return;
  const stays = item && (current === item.comment.status || (current === 'flagged' && item.flag_count > 0));
  if (stays) {
    const fresh = renderItem(item);
    entry.el.replaceWith(fresh);
    items.set(id, { item, el: fresh });
    return;
  }
  const next = entry.el.nextElementSibling || entry.el.previousElementSibling;
  const hadFocus = entry.el.contains(document.activeElement);
  entry.el.remove();
  items.delete(id);
  selected.delete(id);
  document.getElementById('selcount').textContent = `${selected.size} selected`;
  if (hadFocus && next && next.tagName === 'ARTICLE') next.focus();
  if (!items.size) list.replaceChildren(h('p', { class: 'muted' }, 'Nothing left in this queue.'));
}

/** A 409 version_conflict: shows what the comment is now instead of failing silently. */
async function conflict(id, p) {
  const entry = items.get(id);
  if (!entry) return;
  const it = { ...entry.item, comment: { ...entry.item.comment } };
  const m = /version (\d+)\D*$/.exec(p.detail || '');
  if (m) it.version = Number(m[1]);
  let by = '';
  try {
    // The log's newest row says what happened, whoever did it and whatever the status now.
    const last = (await call('GET', `/moderation/log?comment_id=${encodeURIComponent(id)}&limit=1`)).items[0];
    if (last) {
      it.comment.status = last.to_status || it.comment.status;
      by = last.actor ? ` by ${last.actor.name || last.actor.id}` : '';
    }
  } catch {
    // Keep what we know; the version is still the newer one.
  }
  const note = `Another moderator changed this comment first: it is now ${it.comment.status}${by} (version ${it.version}). Check it and decide again if needed.`;
  const fresh = renderItem(it, note);
  entry.el.replaceWith(fresh);
  items.set(id, { item: it, el: fresh });
  fresh.focus();
  say(note);
}

async function decide(id, action) {
  const entry = items.get(id);
  if (!entry) return;
  try {
    const item = await call('POST', `/moderation/comments/${encodeURIComponent(id)}/decision`,
      { action, expected_version: entry.item.version });
    say(`${LABEL[item.comment.status] || item.comment.status}: comment by ${item.comment.author ? item.comment.author.name : 'guest'}.`);
    settle(id, item);
    refreshStats();
  } catch (e) {
    const p = e.problem || {};
    if (p.code === 'version_conflict') return conflict(id, p);
    say(`Decision failed: ${e.message}`);
  }
}

async function decideSelected(action) {
  const ids = [...selected].filter((id) => items.has(id));
  if (!ids.length) return say('Select items first (x, or the Select boxes).');
  try {
    const res = await call('POST', '/moderation/decisions', {
      items: ids.map((id) => ({ comment_id: id, action, expected_version: items.get(id).item.version })),
    });
    let ok = 0;
    for (const r of res.results) {
      if (r.ok) {
        ok++;
        settle(r.comment_id, r.item);
      } else if (r.error && r.error.code === 'version_conflict') await conflict(r.comment_id, r.error);
    }
    say(`${ok} of ${ids.length} decided (${action}).`);
    refreshStats();
  } catch (e) {
    say(`Bulk decision failed: ${e.message}`);
  }
}

document.addEventListener('keydown', (ev) => {
  if (!list || !QUEUES.includes(current) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t.closest && t.closest('input:not([type=checkbox]),textarea,select,[role=tablist]')) return;
  const arts = [...list.querySelectorAll('article')];
  if (!arts.length) return;
  const at = document.activeElement && document.activeElement.closest ? document.activeElement.closest('article') : null;
  const i = arts.indexOf(at);
  const key = ev.key.toLowerCase();
  if (key === 'j' || key === 'k') {
    ev.preventDefault();
    const j = i < 0 ? 0 : Math.max(0, Math.min(arts.length - 1, i + (key === 'j' ? 1 : -1)));
    arts[j].focus();
    arts[j].scrollIntoView({ block: 'nearest' });
    return;
  }
  if (i < 0) return;
  const id = at.dataset.id;
  const act = ACTIONS.find(([, , k]) => k === key);
  if (act) {
    ev.preventDefault();
    decide(id, act[0]);
  } else if (key === 'x') {
    ev.preventDefault();
    toggle(id);
  }
});

// ---- log -----------------------------------------------------------------------------

async function showLog() {
  panel.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const res = await call('GET', '/moderation/log?limit=100');
    panel.replaceChildren(h('table', {},
      h('caption', { class: 'muted' }, 'Moderation log, newest first'),
      h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'Comment', 'From', 'To', 'Reason'].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, res.items.map((r) => h('tr', {},
        h('td', {}, fmt(r.at)), h('td', {}, r.actor ? r.actor.name || r.actor.id : ''), h('td', {}, r.action),
        h('td', {}, r.comment_id), h('td', {}, r.from_status || ''), h('td', {}, r.to_status || ''), h('td', {}, r.reason || ''))))));
  } catch (e) {
    panel.replaceChildren(h('p', { class: 'warn' }, `Could not load the log: ${e.message}`));
  }
}

// ---- bans ----------------------------------------------------------------------------

async function showBans() {
  const user = h('input', { id: 'ban-user', required: true });
  const reason = h('input', { id: 'ban-reason', required: true });
  const expires = h('input', { id: 'ban-expires', type: 'datetime-local' });
  const purge = h('input', { id: 'ban-purge', type: 'checkbox' });
  const table = h('div');
  panel.replaceChildren(
    h('h2', {}, 'Ban a user'),
    h('form', {
      class: 'grid',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const body = { user_id: user.value.trim(), reason: reason.value.trim() };
        if (expires.value) body.expires_at = new Date(expires.value).toISOString().replace(/\.\d+Z$/, 'Z');
        if (purge.checked) body.purge = true;
        try {
          await call('POST', '/moderation/bans', body);
          say(`Banned ${body.user_id}.`);
          user.value = reason.value = expires.value = '';
          showBans();
        } catch (e) {
          say(`Ban failed: ${e.message}`);
        }
      },
    },
    h('label', { for: 'ban-user' }, 'User id'), user,
    h('label', { for: 'ban-reason' }, 'Reason'), reason,
    h('label', { for: 'ban-expires' }, 'Expires (optional)'), expires,
    h('label', { for: 'ban-purge' }, 'Reject their pending comments'), purge,
    h('span'), h('button', { type: 'submit' }, 'Ban')),
    h('h2', {}, 'Banned users'), table);
  try {
    const res = await call('GET', '/moderation/bans?limit=100');
    table.replaceChildren(res.items.length ? h('table', {},
      h('thead', {}, h('tr', {}, ['User', 'Reason', 'By', 'Since', 'Until', ''].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, res.items.map((b) => h('tr', {},
        h('td', {}, b.user_id), h('td', {}, b.reason || ''), h('td', {}, b.created_by || ''), h('td', {}, fmt(b.created_at)),
        h('td', {}, b.expires_at ? fmt(b.expires_at) : 'forever'),
        h('td', {}, h('button', {
          type: 'button', 'aria-label': `Unban ${b.user_id}`, onclick: async () => {
            try {
              await call('DELETE', `/moderation/bans/${encodeURIComponent(b.user_id)}`);
              say(`Unbanned ${b.user_id}.`);
              showBans();
            } catch (e) {
              say(`Unban failed: ${e.message}`);
            }
          },
        }, 'Unban')))))) : h('p', { class: 'muted' }, 'Nobody is banned.'));
  } catch (e) {
    table.replaceChildren(h('p', { class: 'warn' }, `Could not load the bans: ${e.message}`));
  }
}

// ---- settings (admins) ---------------------------------------------------------------

async function showSettings() {
  let s;
  try {
    s = await call('GET', '/admin/settings');
  } catch (e) {
    return panel.replaceChildren(h('p', { class: 'warn' }, `Could not load the settings: ${e.message}`));
  }
  const form = h('form', { class: 'grid' });
  const fields = [];
  for (const [k, v] of Object.entries(s)) {
    const id = `set-${k}`;
    let input;
    let read;
    if (typeof v === 'boolean') {
      input = h('input', { id, type: 'checkbox', checked: v });
      read = () => input.checked;
    } else if (typeof v === 'number') {
      input = h('input', { id, type: 'number', step: 'any', value: String(v) });
      read = () => Number(input.value);
    } else if (Array.isArray(v)) {
      input = h('textarea', { id, rows: 2 });
      input.value = v.join('\n');
      read = () => input.value.split('\n').map((x) => x.trim()).filter(Boolean);
    } else if (k === 'moderation_mode') {
      input = h('select', { id }, ['post', 'pre'].map((m) => h('option', { value: m, selected: m === v }, m)));
      read = () => input.value;
    } else {
      input = h('input', { id, value: v === null ? '' : String(v) });
      read = () => (input.value.trim() === '' ? null : input.value.trim());
    }
    fields.push([k, read]);
    form.append(h('label', { for: id }, k.replace(/_/g, ' ')), input);
  }
  const errors = h('ul', { class: 'warn' });
  form.append(h('span'), h('button', { type: 'submit' }, 'Save settings'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    errors.replaceChildren();
    try {
      await call('PUT', '/admin/settings', Object.fromEntries(fields.map(([k, read]) => [k, read()])));
      say('Settings saved.');
    } catch (e) {
      say(`Settings not saved: ${e.message}`);
      for (const f of (e.problem && e.problem.errors) || []) errors.append(h('li', {}, `${f.field}: ${f.message}`));
    }
  });
  panel.replaceChildren(h('h2', {}, 'Site settings'), form, errors);
}

start();
