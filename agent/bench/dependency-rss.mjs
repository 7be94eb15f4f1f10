/**
 * What each of the agent's dependencies costs in RSS once loaded, as the bundle loads it: for each,
 * a one-line ES module that imports it (and touches what the agent touches) is bundled and minified
 * the way scripts/bundle.mjs does it (the same slim undici and node-forge), then run idle in its own
 * process next to an empty module; the median of 3 processes after a full GC.
 *   node agent/bench/dependency-rss.mjs
 * Prints one JSON line per dependency: KiB above the empty module.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const shims = join(here, '..', 'scripts', 'bundle-shims');
const CASES = {
  'empty module': '',
  'node:tls + node:https': `import 'node:tls'; import 'node:https';`,
  ws: `import WebSocket from 'ws'; globalThis.x = WebSocket;`,
  'undici (slim: Agent, request)': `import { Agent, request } from 'undici'; globalThis.x = [Agent, request];`,
  'node-forge (slim: pki, pkcs7, asn1, md)': `import forge from 'node-forge'; globalThis.x = forge.pki;`,
  pino: `import pino from 'pino'; globalThis.x = pino({ level: 'info' }, pino.destination(2));`,
  'p-retry': `import pRetry from 'p-retry'; globalThis.x = pRetry;`,
  yargs: `import yargs from 'yargs'; globalThis.x = yargs;`,
  '@sinclair/typebox (compiler)': `import { TypeCompiler } from '@sinclair/typebox/compiler'; globalThis.x = TypeCompiler;`,
  '@router-fleet/protocol (codec, decode one message)':
    `import { decode, encode, createMessage } from '@router-fleet/protocol'; globalThis.x = decode(encode(createMessage('ping', {})));`,
};

const dir = mkdtempSync(join(tmpdir(), 'dep-rss-'));
const probe = `
await new Promise((r) => setTimeout(r, 1500));
globalThis.gc?.(); globalThis.gc?.();
await new Promise((r) => setTimeout(r, 500));
const { readFileSync } = await import('node:fs');
process.stdout.write(/VmRSS:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
`;
const rss = (file) =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.once('exit', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`${file} exited ${code}`))));
  });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

try {
  let base;
  for (const [name, code] of Object.entries(CASES)) {
    const entry = join(dir, 'entry.mjs');
    writeFileSync(entry, `${code}\n${probe}`);
    const outfile = join(dir, `${Object.keys(CASES).indexOf(name)}.mjs`);
    await build({
      entryPoints: [entry],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20.19',
      minify: true,
      absWorkingDir: join(here, '..'),
      nodePaths: [join(here, '..', 'node_modules'), join(here, '..', '..', 'node_modules')],
      logLevel: 'error',
      plugins: [{ name: 'slim', setup: (b) => b.onResolve({ filter: /^(undici|node-forge)$/ }, (a) => ({ path: join(shims, `${a.path}.mjs`) })) }],
      banner: { js: `import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);` },
    });
    const kib = median([await rss(outfile), await rss(outfile), await rss(outfile)]);
    base ??= kib;
    console.log(JSON.stringify({ name: 'dependency-rss', dependency: name, rssKiB: kib, aboveEmptyKiB: kib - base, bundleBytes: readFileSync(outfile).length }));
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
