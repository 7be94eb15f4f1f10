// Bundles the agent CLI with esbuild into minified ES modules that need only Node (>= 20.19):
//   npm run bundle -w agent            → agent/dist-bundle/: fleet-agent.mjs (the entry), its chunks
//                                        (*.mjs), source maps (*.map), licences (*.LEGAL.txt), meta.json
//   node agent/scripts/bundle.mjs --outdir /tmp/x      (or --outfile /tmp/x/fleet-agent.mjs)
// Every dependency is inside. The source maps sit beside the code (not installed on routers;
// `node --enable-source-maps` uses them when they are there). Prints the bytes per dependency
// (from esbuild's metafile) as one JSON line.
//
// Code splitting: the code an idle agent does not need (the update runner, downloads and undici,
// installers, packet verification and node-forge, yargs for the other commands) is behind dynamic
// `import()`s and lands in chunks that are loaded only when a job arrives or another command runs.
// Measured with agent/bench/memory.mjs, one idle agent: 54.2 MiB RSS split, 57.0 MiB as one file
// (`--single-file`, where dynamic imports become lazily initialised modules of the same file but
// the protocol package's index initialises all of its modules, node-forge included). The chunks
// must stay beside fleet-agent.mjs (install.sh copies them all).
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const agentDir = join(here, '..');
const { values: opts } = parseArgs({
  options: {
    outdir: { type: 'string' },
    outfile: { type: 'string' },
    // For comparison only: one file instead of chunks.
    'single-file': { type: 'boolean', default: false },
  },
});
const outdir = opts.outdir ?? (opts.outfile ? dirname(opts.outfile) : join(agentDir, 'dist-bundle'));
const name = opts.outfile ? basename(opts.outfile).replace(/\.m?js$/, '') : 'fleet-agent';
const { version } = JSON.parse(readFileSync(join(agentDir, 'package.json'), 'utf8'));

/**
 * `undici`, `node-forge` and `mqtt` resolve to shims that load only the parts the agent uses: their
 * index files load everything (fetch, WebSocket, caches; TLS, SSH, ed25519; every MQTT stream
 * type), which esbuild cannot drop from CommonJS.
 */
const slimDependencies = {
  name: 'slim-dependencies',
  setup(b) {
    const shim = (file) => ({ path: join(here, 'bundle-shims', file) });
    b.onResolve({ filter: /^(undici|node-forge|mqtt|worker-timers)$/ }, (args) => shim(`${args.path}.mjs`));
    // Browser polyfills and fallbacks that mqtt, mqtt-packet and bl bring, replaced by what Node has
    // (see each shim). readable-stream 4 is a copy of Node's own streams (mqtt and mqtt-packet each
    // bundled one, with abort-controller, event-target-shim, string_decoder, safe-buffer): `node:stream`.
    b.onResolve({ filter: /^(debug|inherits|process-nextick-args)$/ }, (args) => shim(`${args.path}.cjs`));
    b.onResolve({ filter: /^readable-stream$/ }, () => ({ path: 'node:stream', external: true }));
    b.onResolve({ filter: /\/llhttp_simd-wasm\.js$/ }, () => shim('llhttp-simd-wasm.cjs'));
    // cliui and wrap-ansi pin string-width 7 (emoji-regex, 14 KB); yargs already brings string-width 8,
    // which measures emoji with the `\p{RGI_Emoji}` property instead: every importer gets yargs' copy.
    b.onResolve({ filter: /^string-width$/ }, async (args) => {
      if (args.pluginData === 'string-width') return undefined;
      const yargs = await b.resolve('yargs', { kind: 'import-statement', resolveDir: agentDir, pluginData: 'string-width' });
      return b.resolve('string-width', { kind: args.kind, resolveDir: dirname(yargs.path), pluginData: 'string-width' });
    });
  },
};

mkdirSync(outdir, { recursive: true });
// Chunk names carry a content hash: the previous build's chunks would otherwise stay beside the new ones.
for (const f of readdirSync(outdir)) {
  if (/\.mjs(\.map|\.LEGAL\.txt)?$/.test(f) || f === 'meta.json') rmSync(join(outdir, f));
}
const result = await build({
  entryPoints: { [name]: join(agentDir, 'src', 'cli.ts') },
  // Chunks are named by what first needs them; the hash changes with their content, so an agent
  // that is still running during an upgrade keeps finding its own (install.sh removes them after).
  chunkNames: '[name]-[hash]',
  outdir,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: !opts['single-file'],
  platform: 'node',
  format: 'esm',
  target: 'node20.19',
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
  plugins: [slimDependencies],
  // CommonJS dependencies (node-forge, pino, undici) call require() for Node built-ins.
  banner: {
    js: [
      `// fleet-agent ${version}: router-fleet agent, bundled with esbuild (Apache-2.0; third-party licences in the *.LEGAL.txt files beside it).`,
      `import { createRequire as __fleetCreateRequire } from 'node:module';`,
      'const require = __fleetCreateRequire(import.meta.url);',
    ].join('\n'),
  },
});
const entry = join(outdir, `${name}.mjs`);
chmodSync(entry, 0o755);
writeFileSync(join(outdir, 'meta.json'), JSON.stringify(result.metafile));

/** Bytes in the output per npm package (the agent's and protocol's own code by workspace). */
const perDependency = {};
let bytes = 0;
for (const [file, output] of Object.entries(result.metafile.outputs)) {
  if (!file.endsWith('.mjs')) continue;
  bytes += output.bytes;
  for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
    const workspace = input.split('/').find((p) => p !== '..' && p !== 'src') === 'protocol' ? '@router-fleet/protocol' : '@router-fleet/agent';
    const pkg = /.*node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input)?.[1] ?? (input.includes('bundle-shims/') ? `${basename(input).replace(/\.[cm]js$/, '')} (shim)` : workspace);
    perDependency[pkg] = (perDependency[pkg] ?? 0) + bytesInOutput;
  }
}
const sorted = Object.fromEntries(Object.entries(perDependency).sort((a, b) => b[1] - a[1]));
const files = Object.entries(result.metafile.outputs).filter(([f]) => f.endsWith('.mjs')).map(([f, o]) => [basename(f), o.bytes]);
console.log(JSON.stringify({ name: 'bundle', entry, bytes, files: Object.fromEntries(files), perDependency: sorted }));
