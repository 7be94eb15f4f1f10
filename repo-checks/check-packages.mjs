#!/usr/bin/env node
// `npm run check-packages`: every workspace packs into something a stranger can install and use.
// 1. `npm pack` each package (its prepack builds it) and check the file list: no build leftovers
//    (.tsbuildinfo, source maps pointing at sources that are not shipped), README and LICENSE
//    present, every target of main/types/exports/bin inside the tarball.
// 2. Install the tarballs (and nothing of this repository) into an empty project, type-check a
//    file that imports every package with `skipLibCheck: false`, resolve the exported subpaths and
//    run each command's --help.
// Exits 1 with the list of problems. Needs the npm registry for third-party dependencies.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const workspaces = rootPkg.workspaces;
const keep = process.argv.includes('--keep');
const problems = [];
const scratch = mkdtempSync(join(tmpdir(), 'router-fleet-packages-'));
const started = Date.now();
const log = (line) => process.stdout.write(`check-packages: ${line}\n`);

function run(cmd, args, cwd, extraEnv = {}) {
  return execFileSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, npm_config_loglevel: 'error', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false', ...extraEnv },
  });
}

/** Every path a package.json promises (main, types, bin, exports targets; `*` patterns skipped). */
function promisedFiles(pkg) {
  const out = new Set();
  const add = (p) => typeof p === 'string' && !p.includes('*') && out.add(p.replace(/^\.\//, ''));
  add(pkg.main);
  add(pkg.types);
  for (const p of Object.values(pkg.bin ?? {})) add(p);
  const walk = (e) => {
    if (typeof e === 'string') add(e);
    else if (e && typeof e === 'object') for (const v of Object.values(e)) walk(v);
  };
  walk(pkg.exports);
  return [...out];
}

try {
  // ── 1. pack ─────────────────────────────────────────────────────────────────────────────
  const tarballs = {};
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', scratch, ...workspaces.flatMap((w) => ['-w', w])], root));
  for (const entry of packed) {
    const ws = workspaces.find((w) => JSON.parse(readFileSync(join(root, w, 'package.json'), 'utf8')).name === entry.name);
    const pkg = JSON.parse(readFileSync(join(root, ws, 'package.json'), 'utf8'));
    const files = new Set(entry.files.map((f) => f.path));
    tarballs[entry.name] = join(scratch, entry.filename);
    for (const f of files) {
      if (f.endsWith('.tsbuildinfo')) problems.push(`${entry.name}: ships the build cache ${f}`);
      if (f.endsWith('.map')) problems.push(`${entry.name}: ships the source map ${f} (its sources are not in the package)`);
      if (f.startsWith('src/') || f.startsWith('test/')) problems.push(`${entry.name}: ships ${f}`);
    }
    for (const f of ['package.json', 'README.md', 'LICENSE']) if (!files.has(f)) problems.push(`${entry.name}: no ${f} in the package`);
    for (const f of promisedFiles(pkg)) if (!files.has(f)) problems.push(`${entry.name}: package.json names ${f}, which is not in the package`);
    log(`${entry.name}: ${entry.files.length} files, ${(entry.size / 1024).toFixed(0)} KiB packed`);
  }

  // ── 2. install into a stranger's project ────────────────────────────────────────────────
  const project = join(scratch, 'project');
  mkdirSync(project);
  const tsVersion = JSON.parse(readFileSync(join(root, 'node_modules/typescript/package.json'), 'utf8')).version;
  const nodeTypes = rootPkg.devDependencies['@types/node'];
  writeFileSync(join(project, 'package.json'), JSON.stringify({
    name: 'stranger', private: true, type: 'module',
    dependencies: Object.fromEntries(Object.entries(tarballs).map(([n, t]) => [n, `file:${t}`])),
    devDependencies: { typescript: tsVersion, '@types/node': nodeTypes },
    // The packages depend on each other by version; take those from the tarballs, not the registry.
    overrides: Object.fromEntries(Object.entries(tarballs).map(([n, t]) => [n, `file:${t}`])),
  }, null, 2));
  // Scripts are skipped: the SQLite drivers would compile from source; nothing below opens a store.
  run('npm', ['install', '--ignore-scripts', '--no-package-lock'], project);
  log(`installed into ${project}`);

  const imports = Object.keys(tarballs).map((n, k) => `import * as p${k} from '${n}';`).join('\n');
  writeFileSync(join(project, 'index.ts'), `${imports}\nexport const all = [${Object.keys(tarballs).map((_, k) => `p${k}`).join(', ')}];\n`);
  writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: false, noEmit: true, types: ['node'] },
    files: ['index.ts'],
  }, null, 2));
  try {
    run(join(project, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], project);
    log('type-check with skipLibCheck: false passed');
  } catch (err) {
    problems.push(`type-check with skipLibCheck: false failed:\n${err.stdout}${err.stderr}`);
  }

  // Subpath exports and the commands, as a user of the installed packages reaches them.
  writeFileSync(join(project, 'resolve.mjs'), [
    `import { readFileSync } from 'node:fs';`,
    `const hello = JSON.parse(readFileSync(new URL(import.meta.resolve('@router-fleet/protocol/schema/hello.json')), 'utf8'));`,
    `if (typeof hello !== 'object') throw new Error('schema/hello.json is not JSON');`,
    `import.meta.resolve('@router-fleet/server-stub/cli');`,
    `const config = await import('@router-fleet/protocol/config');`,
    `if (typeof config.loadConfigTable !== 'function') throw new Error('@router-fleet/protocol/config has no loadConfigTable');`,
    `const csv = await import('@router-fleet/protocol/csv');`,
    `if (typeof csv.parseCsv !== 'function') throw new Error('@router-fleet/protocol/csv has no parseCsv');`,
    `const random = await import('@router-fleet/protocol/random');`,
    `if (typeof random.mulberry32 !== 'function') throw new Error('@router-fleet/protocol/random has no mulberry32');`,
    `for (const n of ${JSON.stringify(Object.keys(tarballs))}) await import(n);`,
  ].join('\n'));
  try {
    run(process.execPath, ['resolve.mjs'], project);
  } catch (err) {
    problems.push(`importing the installed packages failed:\n${err.stderr}`);
  }
  for (const bin of ['fleet-agent', 'fleet-sim', 'fleet-server', 'fleet-loadtest']) {
    try {
      const out = run(join(project, 'node_modules/.bin', bin), ['--help'], project);
      if (!out.includes(bin)) problems.push(`${bin} --help does not name the command:\n${out}`);
    } catch (err) {
      problems.push(`${bin} --help failed:\n${err.stdout ?? ''}${err.stderr ?? err.message}`);
    }
  }
} catch (err) {
  problems.push(`${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
} finally {
  if (!keep) rmSync(scratch, { recursive: true, force: true });
}

const seconds = ((Date.now() - started) / 1000).toFixed(0);
if (problems.length > 0) {
  process.stderr.write(`check-packages: ${problems.length} problem(s) (${seconds} s):\n- ${problems.join('\n- ')}\n`);
  process.exit(1);
}
log(`every package packs, installs, type-checks and runs (${seconds} s)`);
