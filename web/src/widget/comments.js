// <tally-comments article="…">: the thread, with replies, load more, post / reply / edit /
// delete / flag / helpful, the reader's own pending comments marked, and a sort choice.
// Every text from the API goes in as a text node (h() never parses HTML).
import { BASE_CSS, Problem, emit, enc, h, langOf, request, tokenOf } from './core.js';

const T = {
  en: {
    heading: 'Comments', write: 'Write a comment', post: 'Post', reply: 'Reply', writeReply: 'Write a reply',
    postReply: 'Post reply', edit: 'Edit', editBox: 'Edit your comment', save: 'Save', cancel: 'Cancel',
    del: 'Delete', flag: 'Flag', flagReason: 'Reason', sendFlag: 'Send flag', flagged: 'Flagged, thank you',
    helpful: 'Helpful', pending: 'Awaiting moderation', rejected: 'Not published: it breaks a rule of this site',
    loadMore: 'Load more', moreReplies: 'More replies', sort: 'Sort', newest: 'Newest', oldest: 'Oldest', best: 'Best',
    signIn: 'Sign in to comment.', closed: 'Comments are closed for this article.', deleted: 'This comment was deleted.',
    edited: 'edited', none: 'No comments yet.', count: (n) => (n === 1 ? '1 comment' : `${n} comments`),
    reasons: { spam: 'Spam', abuse: 'Abuse', off_topic: 'Off topic', other: 'Other' }, sortFailed: 'This sort order is not available.',
    failed: 'Something went wrong', anonymous: 'Anonymous',
  },
  de: {
    heading: 'Kommentare', write: 'Kommentar schreiben', post: 'Senden', reply: 'Antworten', writeReply: 'Antwort schreiben',
    postReply: 'Antwort senden', edit: 'Bearbeiten', editBox: 'Kommentar bearbeiten', save: 'Speichern', cancel: 'Abbrechen',
    del: 'Löschen', flag: 'Melden', flagReason: 'Grund', sendFlag: 'Meldung senden', flagged: 'Gemeldet, danke',
    helpful: 'Hilfreich', pending: 'Wartet auf Freigabe', rejected: 'Nicht veröffentlicht: verstößt gegen eine Regel dieser Seite',
    loadMore: 'Mehr laden', moreReplies: 'Weitere Antworten', sort: 'Sortierung', newest: 'Neueste', oldest: 'Älteste', best: 'Beste',
    signIn: 'Zum Kommentieren bitte anmelden.', closed: 'Die Kommentare zu diesem Artikel sind geschlossen.',
    deleted: 'Dieser Kommentar wurde gelöscht.', edited: 'bearbeitet', none: 'Noch keine Kommentare.',
    count: (n) => (n === 1 ? '1 Kommentar' : `${n} Kommentare`),
    reasons: { spam: 'Spam', abuse: 'Beleidigung', off_topic: 'Themenfremd', other: 'Anderes' },
    sortFailed: 'Diese Sortierung ist nicht verfügbar.', failed: 'Etwas ist schiefgegangen', anonymous: 'Anonym',
  },
};

/** The contract's default edit window; the server has the last word (403 edit_window_expired). */
const EDIT_WINDOW_MS = 15 * 60 * 1000;

const STYLE = `${BASE_CSS}
h2{font-size:1.15em;margin:0 0 .5em}
.bar{display:flex;flex-wrap:wrap;gap:.6em;align-items:center;justify-content:space-between;margin-bottom:.6em}
form{display:flex;flex-direction:column;gap:.4em;margin:.5em 0}
form .actions{display:flex;gap:.4em}
ol{list-style:none;margin:0;padding:0}
ol ol{margin-left:1.2em;padding-left:.8em;border-left:2px solid var(--_border)}
article{padding:.6em 0;border-top:1px solid var(--_border)}
ol ol article{border-top:0}
.meta{display:flex;flex-wrap:wrap;gap:.5em;align-items:baseline}
.author{font-weight:700}
.body{white-space:pre-wrap;overflow-wrap:anywhere;margin:.25em 0}
.badge{font-size:.85em;border:1px solid var(--_accent);color:var(--_fg);border-radius:999px;padding:0 .5em}
.tools{display:flex;flex-wrap:wrap;gap:.2em}
`;

function fmtDate(iso, lang) {
  try {
    return new Date(iso).toLocaleString(lang === 'de' ? 'de-DE' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short' });
  } catch {
    return iso;
  }
}

export class TallyComments extends HTMLElement {
  static observedAttributes = ['article', 'token', 'lang', 'api'];

  constructor() {
    super();
    this.attachShadow({ mode: 'open' });
    this.sort = 'newest';
  }

  connectedCallback() {
    this.load();
  }

  attributeChangedCallback(_n, old, now) {
    if (this.isConnected && old !== now && this.loaded) this.load();
  }

  get t() {
    return T[langOf(this)];
  }

  get path() {
    return `/articles/${enc(this.getAttribute('article') || '')}`;
  }

  fail(e, where) {
    const p = e instanceof Problem ? e.problem : { status: 0, code: 'client_error', title: String(e) };
    emit(this, 'tally:error', p);
    const target = where || this.shadowRoot.querySelector('.status');
    if (target) target.textContent = `${this.t.failed}: ${p.detail || p.title || p.code}`;
    return p;
  }

  async load() {
    this.loaded = true;
    if (!this.getAttribute('article')) return;
    const t = this.t;
    this.signedIn = !!(await tokenOf(this));
    let open = true;
    try {
      open = (await request(this, 'GET', this.path)).comments_open !== false;
    } catch (e) {
      if (!(e instanceof Problem) || e.problem.status !== 404) return this.fail(e);
    }
    this.open = open;
    const sortSel = h('select', { onchange: (ev) => this.changeSort(ev.target) },
      ['newest', 'oldest', 'best'].map((s) => h('option', { value: s, selected: s === this.sort }, t[s])));
    this.countEl = h('h2', {}, t.heading);
    this.list = h('ol', { class: 'thread' });
    this.more = h('button', { type: 'button', hidden: true, onclick: () => this.page(false) }, t.loadMore);
    this.shadowRoot.replaceChildren(
      h('style', {}, STYLE),
      h('section', { part: 'comments', 'aria-label': t.heading },
        h('div', { class: 'bar' }, this.countEl, h('label', {}, `${t.sort} `, sortSel)),
        this.composer(null),
        h('p', { class: 'status err', role: 'status' }),
        this.list,
        this.more,
      ),
    );
    await this.page(true);
  }

  /** The form for a new comment (parent null) or a reply; or a line saying why there is none. */
  composer(parent, onDone) {
    const t = this.t;
    if (!this.signedIn) return parent ? null : h('p', { class: 'muted' }, t.signIn);
    if (!this.open) return parent ? null : h('p', { class: 'muted' }, t.closed);
    const box = h('textarea', { 'aria-label': parent ? t.writeReply : t.write, required: true, maxLength: 5000 });
    const err = h('p', { class: 'err', role: 'status' });
    const form = h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        if (!box.value.trim()) return box.focus();
        const submit = form.querySelector('button[type=submit]');
        submit.disabled = true;
        try {
          const body = { body: box.value };
          if (parent) body.parent_id = parent.id;
          const c = await request(this, 'POST', `${this.path}/comments`, body, { 'Idempotency-Key': crypto.randomUUID() });
          box.value = '';
          emit(this, 'tally:commented', { comment: c });
          this.insert(c, parent);
          if (onDone) onDone();
        } catch (e) {
          this.fail(e, err);
        } finally {
          submit.disabled = false;
        }
      },
    }, box, h('div', { class: 'actions' },
      h('button', { type: 'submit' }, parent ? t.postReply : t.post),
      parent ? h('button', { type: 'button', class: 'link', onclick: () => onDone && onDone() }, t.cancel) : null),
    err);
    return form;
  }

  async changeSort(sel) {
    const old = this.sort;
    this.sort = sel.value;
    const ok = await this.page(true);
    if (!ok) {
      this.sort = old;
      sel.value = old;
      this.shadowRoot.querySelector('.status').textContent = this.t.sortFailed;
    }
  }

  /** Loads the first (reset) or the next page of top-level comments. */
  async page(reset) {
    const q = new URLSearchParams({ sort: this.sort, limit: '20' });
    if (!reset && this.cursor) q.set('cursor', this.cursor);
    let res;
    try {
      res = await request(this, 'GET', `${this.path}/comments?${q}`);
    } catch (e) {
      this.fail(e);
      return false;
    }
    if (reset) this.list.replaceChildren();
    this.shadowRoot.querySelector('.status').textContent = '';
    this.total = res.total;
    this.countEl.textContent = `${this.t.heading} (${res.total})`;
    for (const c of res.items) this.list.append(this.item(c));
    if (reset && !res.items.length) this.list.append(h('li', { class: 'muted empty' }, this.t.none));
    this.cursor = res.next_cursor;
    this.more.hidden = !this.cursor;
    return true;
  }

  /** A list item: the comment's article, then its replies (loaded at once when it has some). */
  item(c) {
    const li = h('li', { 'data-id': c.id });
    const replies = h('ol');
    li.append(this.article(c), replies);
    if (c.reply_count > 0) this.replies(c, replies, null);
    return li;
  }

  async replies(c, ol, cursor) {
    const q = new URLSearchParams({ sort: 'oldest', limit: '50' });
    if (cursor) q.set('cursor', cursor);
    try {
      const res = await request(this, 'GET', `/comments/${enc(c.id)}/replies?${q}`);
      ol.querySelector(':scope > li.more')?.remove();
      for (const r of res.items) ol.append(this.item(r));
      if (res.next_cursor) {
        ol.append(h('li', { class: 'more' },
          h('button', { type: 'button', class: 'link', onclick: () => this.replies(c, ol, res.next_cursor) }, this.t.moreReplies)));
      }
    } catch (e) {
      this.fail(e);
    }
  }

  /** Puts a comment the reader just wrote where it belongs. */
  insert(c, parent) {
    if (parent) {
      const ol = this.list.querySelector(`li[data-id="${CSS.escape(parent.id)}"] > ol`);
      if (ol) ol.append(this.item(c));
    } else {
      this.list.querySelector(':scope > li.empty')?.remove();
      const li = this.item(c);
      // Oldest first: a new comment belongs at the end, which is here once every page is loaded.
      if (this.sort !== 'oldest') this.list.prepend(li);
      else if (!this.cursor) this.list.append(li);
      if (c.status !== 'rejected') this.countEl.textContent = `${this.t.heading} (${++this.total})`;
    }
    this.list.querySelector(`li[data-id="${CSS.escape(c.id)}"] article`)?.focus();
  }

  replace(art, c) {
    const fresh = this.article(c);
    art.replaceWith(fresh);
    fresh.focus();
  }

  /** One comment as an `article`: author, time, body as text, markers and the buttons allowed. */
  article(c) {
    const t = this.t;
    const lang = langOf(this);
    const gone = c.status === 'deleted';
    const name = gone ? '' : (c.author && c.author.name) || t.anonymous;
    const art = h('article', { tabindex: '-1', 'aria-label': gone ? t.deleted : name });
    const tools = h('div', { class: 'tools' });
    const slot = h('div');
    art.append(
      h('div', { class: 'meta' },
        gone ? null : h('span', { class: 'author' }, name),
        c.stars ? h('span', { class: 'muted' }, '★'.repeat(c.stars)) : null,
        h('time', { class: 'muted', datetime: c.created_at }, fmtDate(c.created_at, lang)),
        c.edited_at ? h('span', { class: 'muted' }, `(${t.edited})`) : null,
        c.mine && c.status === 'pending' ? h('span', { class: 'badge' }, t.pending) : null,
        c.mine && c.status === 'rejected' ? h('span', { class: 'badge' }, t.rejected) : null),
      h('p', { class: 'body' + (gone ? ' muted' : '') }, gone ? t.deleted : c.body),
      tools, slot);
    if (gone) return art;
    const open = (node) => {
      slot.replaceChildren(node);
      node.querySelector('textarea,select')?.focus();
    };
    const close = () => {
      slot.replaceChildren();
      art.focus();
    };
    if (c.votes) {
      const up = c.my_vote === 'up';
      tools.append(h('button', {
        type: 'button', class: 'link', 'aria-pressed': String(up), disabled: !this.signedIn || c.mine,
        onclick: async () => {
          try {
            const v = up
              ? await request(this, 'DELETE', `/comments/${enc(c.id)}/vote`)
              : await request(this, 'PUT', `/comments/${enc(c.id)}/vote`, { vote: 'up' });
            this.replace(art, { ...c, votes: v.votes, my_vote: v.my_vote });
          } catch (e) {
            this.fail(e, slot);
          }
        },
      }, t.helpful), h('span', { class: 'muted votes' }, String(c.votes.up)));
    }
    if (this.signedIn && this.open && c.status === 'approved') {
      tools.append(h('button', { type: 'button', class: 'link', onclick: () => open(this.composer(c, close)) }, t.reply));
    }
    if (c.mine) {
      if (Date.now() - Date.parse(c.created_at) < EDIT_WINDOW_MS && c.status !== 'rejected') {
        tools.append(h('button', { type: 'button', class: 'link', onclick: () => open(this.editor(c, art, close)) }, t.edit));
      }
      tools.append(h('button', {
        type: 'button', class: 'link', onclick: async () => {
          try {
            await request(this, 'DELETE', `/comments/${enc(c.id)}`);
            const li = art.parentElement;
            if (li.querySelector(':scope > ol > li')) this.replace(art, { ...c, status: 'deleted', body: '', author: null });
            else {
              const next = li.nextElementSibling || li.parentElement.closest('li') || this.shadowRoot.querySelector('textarea');
              li.remove();
              if (!c.parent_id) this.countEl.textContent = `${t.heading} (${--this.total})`;
              (next?.querySelector?.('article') || next)?.focus?.();
            }
          } catch (e) {
            this.fail(e, slot);
          }
        },
      }, t.del));
    } else if (this.signedIn) {
      tools.append(h('button', { type: 'button', class: 'link', onclick: () => open(this.flagger(c, slot, close)) }, t.flag));
    }
    return art;
  }

  editor(c, art, close) {
    const t = this.t;
    const box = h('textarea', { 'aria-label': t.editBox, maxLength: 5000 });
    box.value = c.body;
    const err = h('p', { class: 'err', role: 'status' });
    return h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const fresh = await request(this, 'PATCH', `/comments/${enc(c.id)}`, { body: box.value });
          this.replace(art, fresh);
        } catch (e) {
          this.fail(e, err);
        }
      },
    }, box, h('div', { class: 'actions' }, h('button', { type: 'submit' }, t.save),
      h('button', { type: 'button', class: 'link', onclick: close }, t.cancel)), err);
  }

  flagger(c, slot, close) {
    const t = this.t;
    const sel = h('select', {}, Object.entries(t.reasons).map(([v, label]) => h('option', { value: v }, label)));
    const err = h('p', { class: 'err', role: 'status' });
    return h('form', {
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          await request(this, 'POST', `/comments/${enc(c.id)}/flags`, { reason: sel.value });
          slot.replaceChildren(h('p', { class: 'muted', role: 'status' }, t.flagged));
        } catch (e) {
          this.fail(e, err);
        }
      },
    }, h('label', {}, `${t.flagReason} `, sel), h('div', { class: 'actions' }, h('button', { type: 'submit' }, t.sendFlag),
      h('button', { type: 'button', class: 'link', onclick: close }, t.cancel)), err);
  }
}
