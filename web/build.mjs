// Builds web/dist/tally.js (the widget) and web/dist/console.html (the console, one
// self-contained page). `node build.mjs`; the output is committed and embedded in tally.
import { build } from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';

const here = new URL('.', import.meta.url).pathname;
mkdirSync(`${here}dist`, { recursive: true });
const common = { bundle: true, minify: true, format: 'esm', target: ['es2022'], legalComments: 'none', charset: 'utf8', write: false };

// Two modules: tally.js (the rating, and a loader for the thread) and tally-comments.js
// (the thread), each self-contained; the small shared core is in both.
for (const name of ['tally', 'tally-comments']) {
  const widget = await build({ ...common, entryPoints: [`${here}src/widget/${name}.js`], external: ['./tally-comments.js'] });
  writeFileSync(`${here}dist/${name}.js`, widget.outputFiles[0].text);
}

const script = await build({ ...common, entryPoints: [`${here}src/console/console.js`] });
const style = await build({ ...common, bundle: false, format: undefined, loader: { '.css': 'css' }, entryPoints: [`${here}src/console/console.css`] });
const page = readFileSync(`${here}src/console/index.html`, 'utf8')
  .replace('/*STYLE*/', () => style.outputFiles[0].text.trim())
  .replace('/*SCRIPT*/', () => script.outputFiles[0].text.trim().replace(/<\/script/gi, '<\\/script'));
writeFileSync(`${here}dist/console.html`, page);
console.log('built dist/tally.js, dist/tally-comments.js and dist/console.html');
