/**
 * The agent's footprint as shipped: the size of the bundle, and the RSS of one idle agent (the
 * bundle, emulated platform) connected over TLS to the reference server, next to its floors
 * measured in the same run: a bare `node` process and one that has loaded `tls` and `https`.
 *   npm run build && npm run bench -w agent
 *   node agent/bench/memory.mjs [--no-build] [--bundle DIR] [--settle-sec 20] [--node-flags "--max-semi-space-size=1"]
 * Prints JSON lines: `bundle` (bytes of all chunks, of those an idle agent loads, of the source maps),
 * then `idle-rss` (KiB of each process, median of the samples, and the ratios).
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { idleNode, ROOT, rssKiB, stageOneDevice, waitFor } from './stage.mjs';

const { values: opts } = parseArgs({
  options: {
    'no-build': { type: 'boolean', default: false },
    bundle: { type: 'string', default: join(ROOT, 'agent', 'dist-bundle') },
    'settle-sec': { type: 'string', default: '20' },
    samples: { type: 'string', default: '5' },
    'node-flags': { type: 'string', default: '' },
  },
});
const bundleDir = opts.bundle;
if (!opts['no-build']) execFileSync(process.execPath, [join(ROOT, 'agent', 'scripts', 'bundle.mjs'), '--outdir', bundleDir], { stdio: 'ignore' });
const entry = join(bundleDir, 'fleet-agent.mjs');

// Sizes from esbuild's metafile (bundle.mjs writes it): every chunk, and the ones an idle `run`
// loads (the entry's static imports, transitively; the rest is loaded by dynamic import).
const meta = JSON.parse(readFileSync(join(bundleDir, 'meta.json'), 'utf8'));
const outputs = new Map(Object.entries(meta.outputs).map(([f, o]) => [basename(f), o]));
const code = [...outputs].filter(([f]) => f.endsWith('.mjs'));
const idle = new Set();
const visit = (name) => {
  if (idle.has(name) || !outputs.has(name)) return;
  idle.add(name);
  for (const i of outputs.get(name).imports) if (i.kind === 'import-statement') visit(basename(i.path));
};
visit('fleet-agent.mjs');
console.log(
  JSON.stringify({
    name: 'bundle',
    bytes: code.reduce((n, [, o]) => n + o.bytes, 0),
    targetBytes: 1_200_000,
    loadedWhenIdleBytes: [...idle].reduce((n, f) => n + outputs.get(f).bytes, 0),
    sourceMapBytes: [...outputs].filter(([f]) => f.endsWith('.map')).reduce((n, [, o]) => n + o.bytes, 0),
    files: Object.fromEntries(code.map(([f, o]) => [f, o.bytes])),
  }),
);

const nodeFlags = opts['node-flags'].split(' ').filter(Boolean);
const stage = await stageOneDevice({ agentEntry: entry });
const bare = idleNode();
const tlsHttps = idleNode(['node:tls', 'node:https']);
const agent = spawn(
  process.execPath,
  [...nodeFlags, entry, 'run', '--no-supervise', '--data', stage.agentDir, '--boot-delay-max-sec', '0', '--log-level', 'warn'],
  { stdio: ['ignore', 'ignore', 'inherit'] },
);
try {
  await waitFor('the agent online and managed', async () => {
    const d = await stage.device();
    return d.status === 'online' && d.admission === 'managed';
  });
  // After the welcome the agent sends its status and events; let that and the first collections pass.
  await new Promise((r) => setTimeout(r, Number(opts['settle-sec']) * 1000));
  const samples = { agent: [], bare: [], tlsHttps: [] };
  for (let i = 0; i < Number(opts.samples); i++) {
    samples.agent.push(rssKiB(agent.pid));
    samples.bare.push(rssKiB(bare.pid));
    samples.tlsHttps.push(rssKiB(tlsHttps.pid));
    await new Promise((r) => setTimeout(r, 1000));
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const kib = { agent: median(samples.agent), bare: median(samples.bare), tlsHttps: median(samples.tlsHttps) };
  console.log(
    JSON.stringify({
      name: 'idle-rss',
      node: process.version,
      nodeFlags,
      agentKiB: kib.agent,
      bareNodeKiB: kib.bare,
      tlsHttpsNodeKiB: kib.tlsHttps,
      ratioToBare: Number((kib.agent / kib.bare).toFixed(3)),
      ratioToTlsHttps: Number((kib.agent / kib.tlsHttps).toFixed(3)),
      targetRatioToBare: 1.3,
    }),
  );
} finally {
  agent.kill('SIGTERM');
  bare.kill();
  tlsHttps.kill();
  await new Promise((r) => agent.once('exit', r));
  await stage.close();
}
