// Shared by the browser tests: a tally server on a temp database, a static page server on
// another origin (so every call is cross-origin), tokens, and Chromium via playwright-core.
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as netServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const here = new URL('.', import.meta.url).pathname;
const repo = join(here, '..', '..');
export const SECRET = 'browser-tests-' + randomBytes(8).toString('hex');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = netServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function b64url(x) {
  return Buffer.from(x).toString('base64url');
}

/** An HS256 token, as the host site would mint it. */
export function token(sub, role = 'reader', name = sub) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, name, role, exp: Math.floor(Date.now() / 1000) + 3600 }));
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** Starts tally (TALLY_BIN, else target/debug/tally) on a fresh SQLite file or TALLY_WEB_TEST_DATABASE_URL. */
export async function startTally() {
  const bin = process.env.TALLY_BIN || join(process.env.CARGO_TARGET_DIR || join(repo, 'target'), 'debug', 'tally');
  const dir = mkdtempSync(join(tmpdir(), 'tally-web-'));
  const port = await freePort();
  const env = {
    ...process.env,
    TALLY_BIND: `127.0.0.1:${port}`,
    TALLY_DATABASE_URL: process.env.TALLY_WEB_TEST_DATABASE_URL || `sqlite://${dir}/tally.db?mode=rwc`,
    TALLY_JWT_SECRET: SECRET,
    TALLY_WRITE_RATE_PER_MIN: '0',
    TALLY_CORS_ORIGINS: '*',
    TALLY_LOG: 'warn',
  };
  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => (log += d));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) throw new Error(`tally exited: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    },
    /** A JSON call straight to the API (for arranging and checking). */
    async api(method, path, tok, body) {
      const headers = {};
      if (tok) headers.Authorization = `Bearer ${tok}`;
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const res = await fetch(`${base}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    },
  };
}

/** A static server on another origin: `pages.set('/x.html', html)`. */
export async function startPages() {
  const pages = new Map();
  const port = await freePort();
  const server = createServer((req, res) => {
    const html = pages.get(new URL(req.url, 'http://x').pathname);
    if (!html) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(html);
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { base: `http://127.0.0.1:${port}`, pages, stop: () => new Promise((r) => server.close(r)) };
}

/** A page embedding the widget the way the README says. */
export function embedPage(tally, body, { head = '', dark = false } = {}) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>An article</title>
<style>body{font-family:sans-serif;margin:1.5rem;max-width:42rem;${dark ? 'background:#16161a;color:#ececf1' : ''}}</style>
${head}<script type="module" src="${tally.base}/widget/tally.js"></script></head>
<body><main><h1>Why backs crack</h1>${body}</main></body></html>`;
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Collects every request a page makes, to prove it talks to nobody but tally and itself. */
export function watchHosts(page) {
  const hosts = new Set();
  page.on('request', (r) => hosts.add(new URL(r.url()).origin));
  return hosts;
}

const AXE = readFileSync(join(here, '..', 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');

/** axe-core's WCAG 2.x A and AA rules on the page (shadow roots included). */
export async function axe(page, selector = 'html') {
  await page.addScriptTag({ content: AXE });
  return page.evaluate(async (sel) => {
    const r = await globalThis.axe.run(sel, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] },
    });
    return r.violations.map((v) => ({ id: v.id, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ') + ' :: ' + n.failureSummary) }));
  }, selector);
}

// The README's screenshots (docs/img) are rewritten only when asked
// (TALLY_WEB_SCREENSHOTS=1 bash .ci/web.sh); otherwise they go to a temp folder, so a
// test run leaves the work tree as it was.
export const screenshotDir = process.env.TALLY_WEB_SCREENSHOTS
  ? join(repo, 'docs', 'img')
  : join(tmpdir(), 'tally-web-screenshots');
