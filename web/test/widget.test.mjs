// <tally-rating> and <tally-comments> in Chromium, on a page of another origin than tally.
// Elements are found by role and accessible name only.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { axe, embedPage, launch, screenshotDir, startPages, startTally, token, watchHosts } from './harness.mjs';

let tally;
let pages;
let browser;

before(async () => {
  [tally, pages, browser] = await Promise.all([startTally(), startPages(), launch()]);
});

after(async () => {
  await browser?.close();
  await pages?.stop();
  await tally?.stop();
});

let n = 0;
/** Opens a new page on the page server holding `body` (and `head`), returns it. */
async function open(body, opts = {}) {
  const path = `/article-${++n}.html`;
  pages.pages.set(path, embedPage(tally, body, opts));
  const ctx = await browser.newContext({ colorScheme: opts.dark ? 'dark' : 'light', viewport: { width: 760, height: 900 } });
  const page = await ctx.newPage();
  const hosts = watchHosts(page);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  if (opts.before) await opts.before(page);
  await page.goto(pages.base + path);
  return { page, hosts, errors, close: () => ctx.close() };
}

async function rate(article, user, stars) {
  const r = await tally.api('PUT', `/articles/${article}/ratings/me`, token(user), { stars });
  assert.ok(r.status < 300, JSON.stringify(r));
}

async function comment(article, user, body, parent_id) {
  const r = await tally.api('POST', `/articles/${article}/comments`, token(user, 'reader', user.replace('u-', '')), { body, parent_id });
  assert.equal(r.status, 201, JSON.stringify(r));
  return r.body;
}

describe('<tally-rating>', () => {
  test('shows the aggregate display text, and nothing to choose without a token', async () => {
    await Promise.all([rate('agg-1', 'u-a', 5), rate('agg-1', 'u-b', 5), rate('agg-1', 'u-c', 4)]);
    const scripts = [];
    const { page, hosts, errors, close } = await open('<tally-rating article="agg-1"></tally-rating>', {
      before: async (p) => p.on('request', (r) => r.resourceType() === 'script' && scripts.push(new URL(r.url()).pathname)),
    });
    await page.getByText('4.7 (3 reviews)').waitFor();
    assert.deepEqual(scripts, ['/widget/tally.js'], 'the thread\'s code is not loaded for a rating alone');
    assert.equal(await page.getByRole('radiogroup', { name: 'Your rating' }).count(), 0);
    assert.deepEqual([...hosts].sort(), [pages.base, tally.base].sort(), 'no request to any other host');
    assert.deepEqual(errors, []);
    await close();
  });

  test('rates by keyboard at once and updates the display from the answer', async () => {
    await Promise.all([rate('kb-1', 'u-a', 5), rate('kb-1', 'u-b', 5), rate('kb-1', 'u-c', 4)]);
    const me = token('u-kb');
    const { page, close } = await open(`<tally-rating article="kb-1" token="${me}"></tally-rating>
      <script>document.addEventListener('tally:rated', (e) => { window.rated = e.detail; });</script>`);
    const group = page.getByRole('radiogroup', { name: 'Your rating' });
    await group.waitFor();
    // Tab into the group (nothing checked yet: the first radio), then choose by keys.
    await page.keyboard.press('Tab');
    await page.keyboard.press('Space');
    await page.getByText('3.8 (4 reviews)').waitFor();
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowRight');
    await page.getByText('4.3 (4 reviews)').waitFor();
    assert.equal(await group.getByRole('radio', { name: '3 stars' }).isChecked(), true);
    const detail = await page.evaluate(() => window.rated);
    assert.equal(detail.stars, 3);
    assert.equal(detail.rating.count, 4);
    const stored = await tally.api('GET', '/articles/kb-1/ratings/me', me);
    assert.equal(stored.body.stars, 3);
    // Reloaded, the reader's own rating is checked.
    await page.reload();
    assert.equal(await page.getByRole('radio', { name: '3 stars' }).isChecked(), true);
    await close();
  });

  test('lang="de" formats the figures itself', async () => {
    await Promise.all([rate('de-1', 'u-a', 5), rate('de-1', 'u-b', 5), rate('de-1', 'u-c', 4)]);
    const { page, close } = await open(`<tally-rating article="de-1" lang="de" token="${token('u-de')}"></tally-rating>`);
    await page.getByText('4,7 (3 Bewertungen)').waitFor();
    await page.getByRole('radiogroup', { name: 'Deine Bewertung' }).getByRole('radio', { name: '1 Stern', exact: true }).waitFor();
    await page.getByRole('radio', { name: '5 Sterne' }).check();
    await page.getByText('4,8 (4 Bewertungen)').waitFor();
    await close();
  });
});

describe('<tally-comments>', () => {
  test('posts, replies, edits, deletes and flags', async () => {
    const other = await comment('thread-1', 'u-mia', 'Thanks, the open-book stretch helps.');
    const me = token('u-me', 'reader', 'Me');
    const { page, errors, close } = await open(`<tally-comments article="thread-1" token="${me}"></tally-comments>
      <script>window.seen = []; document.addEventListener('tally:commented', (e) => window.seen.push(e.detail.comment.body));</script>`);
    const mia = page.getByRole('article').filter({ hasText: 'open-book' });
    await mia.waitFor();
    assert.equal(await mia.getByText('mia', { exact: true }).count(), 1, 'the author is shown');

    // Post (markup in a body stays text).
    await page.getByRole('textbox', { name: 'Write a comment' }).fill('My <b>first</b> comment');
    await page.getByRole('button', { name: 'Post', exact: true }).click();
    const mine = page.getByRole('article').filter({ hasText: 'My <b>first</b> comment' });
    await mine.waitFor();
    assert.equal(await page.locator('tally-comments b').count(), 0, 'never rendered as HTML');
    assert.deepEqual(await page.evaluate(() => window.seen), ['My <b>first</b> comment']);

    // Reply to Mia: the reply shows under her comment.
    await mia.getByRole('button', { name: 'Reply' }).click();
    await page.getByRole('textbox', { name: 'Write a reply' }).fill('Agreed!');
    await page.getByRole('button', { name: 'Post reply' }).click();
    const reply = page.getByRole('listitem').filter({ has: mia }).getByRole('article').filter({ hasText: 'Agreed!' });
    await reply.waitFor();
    const replies = await tally.api('GET', `/comments/${other.id}/replies`);
    assert.equal(replies.body.items[0].body, 'Agreed!');

    // Edit my comment.
    await mine.getByRole('button', { name: 'Edit' }).click();
    await page.getByRole('textbox', { name: 'Edit your comment' }).fill('My edited comment');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('article').filter({ hasText: 'My edited comment' }).waitFor();

    // Delete the reply.
    await reply.getByRole('button', { name: 'Delete' }).click();
    await reply.waitFor({ state: 'detached' });
    assert.equal((await tally.api('GET', `/comments/${other.id}/replies`)).body.items.length, 0);

    // Flag Mia's comment; mine has no Flag button, hers no Edit or Delete.
    assert.equal(await page.getByRole('article').filter({ hasText: 'My edited comment' }).getByRole('button', { name: 'Flag' }).count(), 0);
    assert.equal(await mia.getByRole('button', { name: 'Edit' }).count(), 0);
    await mia.getByRole('button', { name: 'Flag' }).click();
    await page.getByRole('combobox', { name: 'Reason' }).selectOption('off_topic');
    await page.getByRole('button', { name: 'Send flag' }).click();
    await page.getByText('Flagged, thank you').waitFor();
    const queue = await tally.api('GET', '/moderation/queue?queue=flagged', token('mod', 'moderator'));
    assert.ok(queue.body.items.some((it) => it.comment.id === other.id && it.flags.off_topic === 1), JSON.stringify(queue.body));
    assert.deepEqual(errors, []);
    await close();
  });

  test('marks the reader\'s own pending comment', async () => {
    const admin = token('admin-1', 'admin');
    const settings = (await tally.api('GET', '/admin/settings', admin)).body;
    await tally.api('PUT', '/admin/articles/pre-1', admin, { title: 'Pre', url: null, comments_open: true, moderation_mode: 'pre' });
    const { page, close } = await open(`<tally-comments article="pre-1" token="${token('u-pre')}"></tally-comments>`);
    await page.getByRole('textbox', { name: 'Write a comment' }).fill('Please check me first');
    await page.getByRole('button', { name: 'Post', exact: true }).click();
    const art = page.getByRole('article').filter({ hasText: 'Please check me first' });
    await art.getByText('Awaiting moderation').waitFor();
    // Still marked after a reload (the API lists the caller's own pending comments).
    await page.reload();
    await page.getByRole('article').filter({ hasText: 'Please check me first' }).getByText('Awaiting moderation').waitFor();
    // Pre-moderation for the whole site through the settings works the same way.
    const put = await tally.api('PUT', '/admin/settings', admin, { ...settings, moderation_mode: 'pre' });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const { page: p2, close: c2 } = await open(`<tally-comments article="pre-2" token="${token('u-pre')}"></tally-comments>`);
    await p2.getByRole('textbox', { name: 'Write a comment' }).fill('Site-wide pre-moderation');
    await p2.getByRole('button', { name: 'Post', exact: true }).click();
    await p2.getByRole('article').filter({ hasText: 'Site-wide' }).getByText('Awaiting moderation').waitFor();
    await tally.api('PUT', '/admin/settings', admin, settings);
    await c2();
    await close();
  });

  test('loads more while there is a next page, and says why there is no form', async () => {
    for (let i = 0; i < 23; i++) await comment('long-1', `u-${i}`, `Comment number ${i}`);
    const { page, close } = await open('<tally-comments article="long-1"></tally-comments>');
    await page.getByRole('article').first().waitFor();
    assert.equal(await page.getByRole('article').count(), 20);
    await page.getByText('Sign in to comment.').waitFor();
    assert.equal(await page.getByRole('textbox', { name: 'Write a comment' }).count(), 0);
    await page.getByRole('button', { name: 'Load more' }).click();
    await page.getByRole('article').nth(22).waitFor();
    assert.equal(await page.getByRole('article').count(), 23);
    assert.equal(await page.getByRole('button', { name: 'Load more' }).isVisible(), false);
    // Sort: oldest first.
    await page.getByRole('combobox', { name: 'Sort' }).selectOption('oldest');
    await page.getByRole('article').first().filter({ hasText: 'Comment number 0' }).waitFor();
    await close();
  });

  test('lang="de" names everything in German', async () => {
    await comment('de-2', 'u-anna', 'Sehr hilfreich.');
    const { page, close } = await open(`<tally-comments article="de-2" lang="de" token="${token('u-de')}"></tally-comments>`);
    await page.getByRole('textbox', { name: 'Kommentar schreiben' }).waitFor();
    await page.getByRole('button', { name: 'Senden', exact: true }).waitFor();
    const art = page.getByRole('article').filter({ hasText: 'Sehr hilfreich.' });
    await art.getByRole('button', { name: 'Antworten' }).waitFor();
    await art.getByRole('button', { name: 'Melden' }).waitFor();
    await page.getByRole('combobox', { name: 'Sortierung' }).waitFor();
    await close();
  });

  test('Helpful votes go through the API, stay after a reload, and the Best sort orders by them', async () => {
    const many = await comment('votes-1', 'u-val', 'Helpful to many');
    const one = await comment('votes-1', 'u-val', 'Helpful to one');
    await comment('votes-1', 'u-val', 'Helpful to nobody');
    const vote = async (user, id) => {
      const r = await tally.api('PUT', `/comments/${id}/vote`, token(user), { vote: 'up' });
      assert.equal(r.status, 200, JSON.stringify(r));
    };
    await Promise.all([vote('u-a', many.id), vote('u-b', many.id), vote('u-c', many.id), vote('u-d', one.id)]);
    const voter = token('u-voter');
    const { page, close } = await open(`<tally-comments article="votes-1" token="${voter}"></tally-comments>`);
    const art = (text) => page.getByRole('article').filter({ hasText: text });
    const helpful = (text) => art(text).getByRole('button', { name: 'Helpful', exact: true });
    await art('Helpful to one').getByText('1', { exact: true }).waitFor();
    assert.equal(await helpful('Helpful to one').getAttribute('aria-pressed'), 'false');
    await helpful('Helpful to one').click();
    await art('Helpful to one').getByText('2', { exact: true }).waitFor();
    assert.equal(await helpful('Helpful to one').getAttribute('aria-pressed'), 'true');
    const mine = await tally.api('GET', `/comments/${one.id}`, voter);
    assert.deepEqual([mine.body.votes, mine.body.my_vote], [{ up: 2, down: 0 }, 'up'], 'the vote is stored');
    // Read again (the signed-in page: the shared page with the reader's votes on it).
    await page.reload();
    await art('Helpful to one').getByText('2', { exact: true }).waitFor();
    assert.equal(await helpful('Helpful to one').getAttribute('aria-pressed'), 'true');
    assert.equal(await helpful('Helpful to many').getAttribute('aria-pressed'), 'false');
    const order = async () => (await page.getByRole('article').allTextContents())
      .map((text) => ['many', 'one', 'nobody'].find((w) => text.includes(`Helpful to ${w}`)));
    assert.deepEqual(await order(), ['nobody', 'one', 'many'], 'newest first');
    await Promise.all([
      page.waitForResponse((r) => r.url().includes('sort=best')),
      page.getByRole('combobox', { name: 'Sort' }).selectOption('best'),
    ]);
    await page.getByRole('article').first().filter({ hasText: 'Helpful to many' }).waitFor();
    assert.deepEqual(await order(), ['many', 'one', 'nobody'], 'best first');
    // Taken back: a DELETE.
    await helpful('Helpful to one').click();
    await art('Helpful to one').getByText('1', { exact: true }).waitFor();
    assert.equal(await helpful('Helpful to one').getAttribute('aria-pressed'), 'false');
    const after = await tally.api('GET', `/comments/${one.id}`, voter);
    assert.deepEqual([after.body.votes, after.body.my_vote], [{ up: 1, down: 0 }, null]);
    // Never on one's own comment.
    const own = await tally.api('PUT', `/comments/${many.id}/vote`, token('u-val'), { vote: 'up' });
    assert.equal(own.status, 403);
    await close();
  });

  test('closed articles say so instead of offering a form', async () => {
    await tally.api('PUT', '/admin/articles/closed-1', token('admin-1', 'admin'), { title: 'Closed', url: null, comments_open: false, moderation_mode: null });
    const { page, close } = await open(`<tally-comments article="closed-1" token="${token('u-x')}"></tally-comments>`);
    await page.getByText('Comments are closed for this article.').waitFor();
    assert.equal(await page.getByRole('button', { name: 'Post', exact: true }).count(), 0);
    await close();
  });
});

describe('both elements', () => {
  test('take the token from window.tally.token, which wins over the attribute', async () => {
    const good = token('u-cb', 'reader', 'Callback');
    const { page, close } = await open(`<script>window.calls = 0; window.tally = { token: async () => { window.calls++; return ${JSON.stringify(good)}; } };</script>
      <tally-rating article="cb-1" token="not-a-valid-token"></tally-rating><tally-comments article="cb-1"></tally-comments>`);
    await page.getByRole('radio', { name: '4 stars' }).check();
    await page.getByText('4.0 (1 review)').waitFor();
    await page.getByRole('textbox', { name: 'Write a comment' }).fill('Through the callback');
    await page.getByRole('button', { name: 'Post', exact: true }).click();
    const art = page.getByRole('article').filter({ hasText: 'Through the callback' });
    await art.getByText('Callback', { exact: true }).waitFor();
    assert.ok((await page.evaluate(() => window.calls)) >= 2);
    await close();
  });

  test('report errors as tally:error events', async () => {
    const { page, close } = await open(`<script>window.errs = []; document.addEventListener('tally:error', (e) => window.errs.push(e.detail.code));</script>
      <tally-rating article="err-1" token="expired.or.bad"></tally-rating>`);
    await page.waitForFunction(() => window.errs.length > 0);
    assert.equal(await page.evaluate(() => window.errs[0]), 'unauthorized');
    await close();
  });

  test('meet WCAG A and AA (axe-core), light and dark, with screenshots', async () => {
    await Promise.all([rate('shot-1', 'u-a', 5), rate('shot-1', 'u-b', 4), rate('shot-1', 'u-c', 5)]);
    const first = await comment('shot-1', 'u-mia', 'Thanks, the open-book stretch helps. I do it every morning now.');
    await comment('shot-1', 'u-jon', 'Is it safe with a slipped disc?');
    await comment('shot-1', 'u-ada', 'Ask your physio first, but it helped me.', first.id);
    const me = token('u-lea', 'reader', 'Lea');
    await tally.api('PUT', '/articles/shot-1/ratings/me', me, { stars: 5 });
    await tally.api('POST', '/articles/shot-1/comments', me, { body: 'Great article, thank you!' });
    mkdirSync(screenshotDir, { recursive: true });
    for (const theme of ['light', 'dark']) {
      const dark = theme === 'dark';
      const { page, close } = await open(`<p>An article about backs, with a rating and comments below.</p>
        <tally-rating article="shot-1" theme="${theme}" token="${me}"></tally-rating>
        <tally-comments article="shot-1" theme="${theme}" token="${me}"></tally-comments>`, { dark });
      await page.getByRole('article').filter({ hasText: 'Ask your physio' }).waitFor();
      await page.getByRole('radio', { name: '5 stars' }).waitFor();
      if (dark) {
        const bg = await page.locator('tally-comments').evaluate((el) => getComputedStyle(el).backgroundColor);
        assert.equal(bg, 'rgb(22, 22, 26)', 'the dark theme applies');
      }
      const violations = await axe(page);
      assert.deepEqual(violations, [], JSON.stringify(violations, null, 1));
      await page.locator('main').screenshot({ path: join(screenshotDir, `widget-${theme}.png`) });
      await close();
    }
  });
});
