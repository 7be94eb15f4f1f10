// Bundles the agent CLI into one self-contained ES module with esbuild:
//   npm run bundle -w agent            → agent/dist-bundle/fleet-agent.mjs
//   node agent/scripts/bundle.mjs --outfile /tmp/x.mjs
// Only Node (>= 20.19) is needed to run the result: every dependency is inside.
import { chmodSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const agentDir = join(here, '..');
const args = process.argv.slice(2);
const outIndex = args.indexOf('--outfile');
const outfile = outIndex >= 0 ? args[outIndex + 1] : join(agentDir, 'dist-bundle', 'fleet-agent.mjs');
const { version } = JSON.parse(readFileSync(join(agentDir, 'package.json'), 'utf8'));

const result = await build({
  entryPoints: [join(agentDir, 'src', 'cli.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20.19',
  minify: false,
  sourcemap: false,
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
  // CommonJS dependencies (node-forge, pino, yargs' parser) call require() for Node built-ins.
  banner: {
    js: [
      `// fleet-agent ${version}: router-fleet agent, bundled with esbuild (Apache-2.0; third-party licences in fleet-agent.mjs.LEGAL.txt).`,
      'import { createRequire as __fleetCreateRequire } from \'node:module\';',
      'const require = __fleetCreateRequire(import.meta.url);',
    ].join('\n'),
  },
});
chmodSync(outfile, 0o755);
const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
console.log(`wrote ${outfile} (${Math.round(bytes / 1024)} KiB)`);
