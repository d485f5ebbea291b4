// The moderation console in Chromium: sign-in, the keyboard alone, a bulk decision, two
// consoles deciding the same item, log, bans, settings, and axe-core.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { axe, launch, screenshotDir, startTally, token } from './harness.mjs';

let tally;
let browser;

before(async () => {
  [tally, browser] = await Promise.all([startTally(), launch()]);
});

after(async () => {
  await browser?.close();
  await tally?.stop();
});

/** Pending comments on a fresh article (pre-moderated), returned in queue order. */
async function pending(article, bodies) {
  const admin = token('admin-1', 'admin');
  await tally.api('PUT', `/admin/articles/${article}`, admin, { title: article, url: null, comments_open: true, moderation_mode: 'pre' });
  const out = [];
  for (const [i, body] of bodies.entries()) {
    const r = await tally.api('POST', `/articles/${article}/comments`, token(`u-${article}-${i}`, 'reader', `Reader ${i}`), { body });
    assert.equal(r.body.status, 'pending');
    out.push(r.body);
  }
  return out;
}

async function status(id) {
  const r = await tally.api('GET', `/moderation/log?comment_id=${id}`, token('mod', 'moderator'));
  return r.body.items[0]?.to_status;
}

async function openConsole(tok, opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 900 }, colorScheme: opts.dark ? 'dark' : 'light' });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${tally.base}/console/#token=${encodeURIComponent(tok)}`);
  return { page, errors, close: () => ctx.close() };
}

test('a reader token gets a message and no queue; the token leaves the address bar', async () => {
  const { page, close } = await openConsole(token('u-1'));
  await page.getByText('has no moderator role').waitFor();
  assert.equal(await page.getByRole('tab').count(), 0);
  assert.ok(!page.url().includes('token'), page.url());
  await close();
});

test('the queue worked with the keyboard alone', async () => {
  const items = await pending('kbd-1', ['First: approve me', 'Second: reject me', 'Third: spam me', 'Fourth: select me', 'Fifth: select me too']);
  const { page, errors, close } = await openConsole(token('mod-1', 'moderator', 'Mo'));
  const tab = page.getByRole('tab', { name: /^Pending \d+$/ });
  await tab.waitFor();
  assert.equal(await tab.getAttribute('aria-selected'), 'true');
  assert.ok(!page.url().includes('token'), 'the token is dropped from the address bar');
  for (const name of [/^Flagged \d+$/, /^Rejected \d+$/, /^Spam \d+$/, /^Approved \d+$/]) await page.getByRole('tab', { name }).waitFor();
  const first = page.getByRole('article').filter({ hasText: 'First: approve me' });
  await first.waitFor();
  // Everything the moderator needs is on the item.
  await first.getByText('Author history').waitFor();
  await first.getByText(/pre/).first().waitFor();

  await page.keyboard.press('j');
  await page.keyboard.press('a');
  await first.waitFor({ state: 'detached' });
  await page.keyboard.press('r'); // focus moved on to the second item
  await page.getByRole('article').filter({ hasText: 'Second: reject me' }).waitFor({ state: 'detached' });
  await page.keyboard.press('s');
  await page.getByRole('article').filter({ hasText: 'Third: spam me' }).waitFor({ state: 'detached' });
  // x selects, j moves; then Tab back to "Approve selected" with the keyboard and press Enter.
  await page.keyboard.press('x');
  await page.keyboard.press('j');
  await page.keyboard.press('x');
  await page.getByText('2 selected').waitFor();
  const bulk = page.getByRole('button', { name: 'Approve selected' });
  for (let i = 0; i < 30 && !(await bulk.evaluate((b) => b === document.activeElement)); i++) await page.keyboard.press('Shift+Tab');
  await page.keyboard.press('Enter');
  await page.getByText('2 of 2 decided').waitFor();
  assert.deepEqual(await Promise.all(items.map((c) => status(c.id))), ['approved', 'rejected', 'spam', 'approved', 'approved']);
  await page.getByRole('tab', { name: /^Approved \d+$/ }).waitFor();
  assert.deepEqual(errors, []);
  await close();
});

test('a bulk decision by clicks is one call', async () => {
  const items = await pending('bulk-1', ['Bulk one', 'Bulk two', 'Bulk three']);
  const { page, close } = await openConsole(token('mod-2', 'moderator'));
  const calls = [];
  page.on('request', (r) => r.url().includes('/moderation/decisions') && calls.push(r.postDataJSON()));
  for (const body of ['Bulk one', 'Bulk three']) {
    await page.getByRole('article').filter({ hasText: body }).getByRole('checkbox', { name: 'Select' }).check();
  }
  await page.getByRole('button', { name: 'Reject selected' }).click();
  await page.getByText('2 of 2 decided').waitFor();
  assert.equal(calls.length, 1);
  assert.equal(calls[0].items.length, 2);
  assert.ok(calls[0].items.every((it) => it.action === 'reject' && Number.isInteger(it.expected_version)));
  assert.deepEqual([await status(items[0].id), await status(items[2].id)], ['rejected', 'rejected']);
  await page.getByRole('article').filter({ hasText: 'Bulk two' }).waitFor();
  await close();
});

test('two consoles deciding the same item: the second sees the conflict and the newer state', async () => {
  const [item] = await pending('race-1', ['Who decides me?']);
  const a = await openConsole(token('mod-a', 'moderator', 'Ann'));
  const b = await openConsole(token('mod-b', 'moderator', 'Ben'));
  const inA = a.page.getByRole('article').filter({ hasText: 'Who decides me?' });
  const inB = b.page.getByRole('article').filter({ hasText: 'Who decides me?' });
  await inA.waitFor();
  await inB.waitFor();
  await inA.getByRole('button', { name: 'Approve' }).click();
  await inA.waitFor({ state: 'detached' });
  await inB.getByRole('button', { name: 'Reject' }).click();
  await inB.getByRole('alert').filter({ hasText: 'Another moderator changed this comment first' }).waitFor();
  await inB.getByRole('alert').filter({ hasText: 'now approved by Ann (version 2)' }).waitFor();
  assert.equal(await status(item.id), 'approved', 'the second decision changed nothing');
  // Deciding again, knowingly, works from the newer version.
  await inB.getByRole('button', { name: 'Reject' }).click();
  await inB.waitFor({ state: 'detached' });
  assert.equal(await status(item.id), 'rejected');
  await a.close();
  await b.close();
});

test('log, bans and (for admins) settings; axe-core and a screenshot', async () => {
  await pending('look-1', ['Check out http://casino.example and http://x.example now', 'A thoughtful reply about posture.']);
  const { page, close } = await openConsole(token('admin-2', 'admin', 'Ada'));
  await page.getByRole('article').first().waitFor();
  mkdirSync(screenshotDir, { recursive: true });
  const violations = await axe(page);
  assert.deepEqual(violations, [], JSON.stringify(violations, null, 1));
  await page.screenshot({ path: join(screenshotDir, 'console.png') });

  await page.getByRole('tab', { name: 'Log' }).click();
  await page.getByRole('table').waitFor();
  assert.deepEqual(await axe(page), []);

  await page.getByRole('tab', { name: 'Bans' }).click();
  await page.getByRole('textbox', { name: 'User id' }).fill('u-troll');
  await page.getByRole('textbox', { name: 'Reason' }).fill('spam runs');
  await page.getByRole('button', { name: 'Ban', exact: true }).click();
  await page.getByRole('cell', { name: 'u-troll', exact: true }).waitFor();
  assert.equal((await tally.api('POST', '/articles/look-1/comments', token('u-troll'), { body: 'hi' })).body.code, 'banned');
  await page.getByRole('button', { name: 'Unban u-troll' }).click();
  await page.getByText('Nobody is banned.').waitFor();
  assert.deepEqual(await axe(page), []);

  await page.getByRole('tab', { name: 'Settings' }).click();
  const threshold = page.getByRole('spinbutton', { name: 'flag threshold' });
  await threshold.fill('4');
  await page.getByRole('button', { name: 'Save settings' }).click();
  await page.getByText('Settings saved.').waitFor();
  assert.equal((await tally.api('GET', '/admin/settings', token('admin-2', 'admin'))).body.flag_threshold, 4);
  assert.deepEqual(await axe(page), []);
  await close();

  // A moderator has no settings tab.
  const mod = await openConsole(token('mod-3', 'moderator'));
  await mod.page.getByRole('tab', { name: 'Bans' }).waitFor();
  assert.equal(await mod.page.getByRole('tab', { name: 'Settings' }).count(), 0);
  await mod.close();
});

test('queue counts follow the live stream, without polling or reloading', async () => {
  const { page, errors, close } = await openConsole(token('mod-live', 'moderator', 'Live'));
  const tab = page.getByRole('tab', { name: /^Pending \d+$/ });
  await tab.waitFor();
  const before = Number((await tab.textContent()).match(/\d+/)[0]);
  await pending('live-1', ['Arrives while the console is open', 'And another one']);
  // The stream's next `stats` renames the tab (well within the old 5 s poll).
  await page.getByRole('tab', { name: `Pending ${before + 2}` }).waitFor({ timeout: 4000 });
  assert.deepEqual(errors, []);
  await close();
});
