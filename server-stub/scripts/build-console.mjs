#!/usr/bin/env node
// Builds the operator console (server-stub/console/) into dist/console/public/: one minified app.js
// and app.css with content hashes in their names (source maps beside), assets, and index.html
// referring to them. No inline script or style: the server's Content-Security-Policy forbids both.
// Run by the build (`npm run build`); the server serves whatever this wrote (src/console/plugin.ts).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'console');
const out = join(root, 'dist', 'console', 'public');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const result = await build({
  entryPoints: { app: join(source, 'src', 'main.tsx') },
  bundle: true,
  minify: true,
  sourcemap: 'linked',
  format: 'esm',
  target: ['chrome111', 'firefox115', 'safari16.4'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: out,
  entryNames: '[name]-[hash]',
  assetNames: 'assets/[name]-[hash]',
  loader: { '.svg': 'file', '.png': 'file', '.woff2': 'file' },
  define: { 'process.env.NODE_ENV': '"production"' },
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const pick = (re) => {
  const name = outputs.find((n) => re.test(n));
  if (!name) throw new Error(`build-console: no output matches ${re}`);
  return name;
};
const html = readFileSync(join(source, 'index.html'), 'utf8')
  .replace('{{APP_JS}}', `/${pick(/^app-\w+\.js$/)}`)
  .replace('{{APP_CSS}}', `/${pick(/^app-\w+\.css$/)}`);
writeFileSync(join(out, 'index.html'), html);
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
if (process.argv.includes('--verbose')) console.log(`console built: ${outputs.length} files, ${bytes} bytes in ${out}`);
