// <tally-rating article="…">: the aggregate's display text beside a star picture, and for
// a signed-in reader a radio group "Your rating" that rates at once.
import { BASE_CSS, Problem, emit, enc, h, langOf, request, tokenOf } from './core.js';

const T = {
  en: { group: 'Your rating', star: (n) => (n === 1 ? '1 star' : `${n} stars`), saving: 'Saving…', saved: 'Saved', failed: 'Could not save your rating' },
  de: { group: 'Deine Bewertung', star: (n) => (n === 1 ? '1 Stern' : `${n} Sterne`), saving: 'Wird gespeichert…', saved: 'Gespeichert', failed: 'Deine Bewertung konnte nicht gespeichert werden' },
};

/** The display text: the API's for English; German formatted here from the same figures. */
export function displayText(agg, lang) {
  if (lang !== 'de') return agg.display;
  const count = agg.count || 0;
  if (!count) return 'Noch keine Bewertungen';
  let sum = 0;
  for (const [k, v] of Object.entries(agg.histogram || {})) sum += Number(k) * v;
  // The exact mean rounded half-up to one decimal, in integers: floor((20·sum + count) / (2·count)).
  const tenths = Math.floor((20 * sum + count) / (2 * count));
  const text = `${Math.floor(tenths / 10)},${tenths % 10}`;
  return `${text} (${count} ${count === 1 ? 'Bewertung' : 'Bewertungen'})`;
}

const CSS = `${BASE_CSS}
.row{display:flex;flex-wrap:wrap;align-items:center;gap:.6em}
.stars{position:relative;display:inline-block;font-size:1.25em;letter-spacing:.1em;color:var(--_border)}
.stars span{position:absolute;left:0;top:0;overflow:hidden;white-space:nowrap;color:var(--_star)}
[role=radiogroup]{display:inline-flex;align-items:center;gap:.1em;border:0;margin:0;padding:0}
[role=radiogroup]>span{margin-right:.3em}
[role=radiogroup] label{cursor:pointer;font-size:1.4em;color:var(--_border);line-height:1}
[role=radiogroup] label.on{color:var(--_star)}
[role=radiogroup] input{position:absolute;opacity:0;width:1px;height:1px}
[role=radiogroup] input:focus-visible+span{outline:3px solid var(--_accent);outline-offset:2px;border-radius:2px}
`;

export class TallyRating extends HTMLElement {
  static observedAttributes = ['article', 'token', 'lang', 'api'];

  constructor() {
    super();
    this.attachShadow({ mode: 'open' });
    this.agg = null;
    this.mine = null;
    this.signedIn = false;
  }

  connectedCallback() {
    this.load();
  }

  attributeChangedCallback(_n, old, now) {
    if (this.isConnected && old !== now && this.loaded) this.load();
  }

  async load() {
    this.loaded = true;
    const article = this.getAttribute('article');
    if (!article) return;
    const path = `/articles/${enc(article)}`;
    try {
      const [agg, token] = await Promise.all([request(this, 'GET', `${path}/rating`), tokenOf(this)]);
      this.agg = agg;
      this.signedIn = !!token;
      this.mine = null;
      if (token) {
        try {
          this.mine = (await request(this, 'GET', `${path}/ratings/me`)).stars;
        } catch (e) {
          if (!(e instanceof Problem) || e.problem.status !== 404) throw e;
        }
      }
      this.render();
    } catch (e) {
      this.fail(e);
    }
  }

  fail(e) {
    const p = e instanceof Problem ? e.problem : { status: 0, code: 'client_error', title: String(e) };
    emit(this, 'tally:error', p);
    const s = this.shadowRoot.querySelector('.status');
    if (s) s.textContent = `${T[langOf(this)].failed}: ${p.detail || p.title || ''}`;
  }

  render() {
    const t = T[langOf(this)];
    const agg = this.agg;
    const avg = agg.count ? agg.average : 0;
    const root = this.shadowRoot;
    root.replaceChildren(
      h('style', {}, CSS),
      h('div', { class: 'row', part: 'rating' },
        h('span', { class: 'stars', 'aria-hidden': 'true' }, '★★★★★', h('span', { style: `width:${(avg / 5) * 100}%` }, '★★★★★')),
        h('span', { class: 'display', part: 'display' }, displayText(agg, langOf(this))),
        this.signedIn ? this.group(t) : null,
        h('span', { class: 'status muted', role: 'status' }),
      ),
    );
  }

  group(t) {
    const id = 'g' + Math.random().toString(36).slice(2);
    const g = h('div', { role: 'radiogroup', 'aria-labelledby': id },
      h('span', { id, class: 'muted' }, t.group));
    for (let n = 1; n <= 5; n++) {
      const input = h('input', { type: 'radio', name: 'stars', value: String(n), 'aria-label': t.star(n), checked: this.mine === n });
      input.addEventListener('change', () => this.rate(n));
      g.append(h('label', { class: this.mine >= n ? 'on' : '' }, input, h('span', { 'aria-hidden': 'true' }, '★')));
    }
    return g;
  }

  /** Rates at once. Choices made while a rating is being saved are not sent side by side
   * (their answers could arrive in either order): the latest is sent when the one in
   * flight is answered, and the display shows the answer for the last choice. */
  async rate(stars) {
    this.wanted = stars;
    if (this.saving) return;
    this.saving = true;
    const t = T[langOf(this)];
    this.shadowRoot.querySelector('.status').textContent = t.saving;
    try {
      let res;
      let sent;
      do {
        sent = this.wanted;
        res = await request(this, 'PUT', `/articles/${enc(this.getAttribute('article'))}/ratings/me`, { stars: sent });
      } while (sent !== this.wanted);
      this.agg = res.rating;
      this.mine = res.stars;
      const active = this.shadowRoot.activeElement;
      const focused = !!active && active.name === 'stars';
      this.render();
      if (focused) this.shadowRoot.querySelector(`input[value="${res.stars}"]`).focus();
      this.shadowRoot.querySelector('.status').textContent = t.saved;
      emit(this, 'tally:rated', { stars: res.stars, rating: res.rating });
    } catch (e) {
      this.fail(e);
    } finally {
      this.saving = false;
    }
  }
}
