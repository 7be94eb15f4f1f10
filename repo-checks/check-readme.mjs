#!/usr/bin/env node
// `npm run check-readme`: the README's walkthrough, run as written on a fresh clone.
// Clones this repository (its committed HEAD) into a temporary directory, runs every ```sh block of
// README.md that is preceded by `<!-- check-readme -->`, in order, in one bash session (the first
// is `npm install`), then checks what a user would see:
//   - the router registered in the walkthrough ($DEVICE) becomes managed;
//   - `npm install` printed no engine warning (EBADENGINE) on this Node.js;
//   - the clone is still clean (`git status`): the lockfile was not rewritten and everything the
//     commands wrote (data directories with keys and credentials) is git-ignored.
// Background processes the blocks start (`&`) are ended with the session's process group.
// Exits 1 with the reason and the session's output. Needs git, bash, curl and the npm registry.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const MARK = '<!-- check-readme -->';
const DEADLINE_MS = 6 * 60_000;
const MANAGED_WITHIN_S = 90;
const started = Date.now();
const log = (line) => process.stdout.write(`check-readme: ${line}\n`);

/** The marked ```sh blocks of README.md, in order. */
export function markedBlocks(markdown) {
  const lines = markdown.split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== MARK) continue;
    let j = i + 1;
    while (j < lines.length && lines[j].trim() === '') j++;
    if (!/^```(sh|bash|shell)\s*$/.test(lines[j] ?? '')) throw new Error(`README.md:${i + 1}: ${MARK} is not followed by a sh block`);
    const start = j + 1;
    let end = start;
    while (end < lines.length && !lines[end].startsWith('```')) end++;
    blocks.push({ line: start + 1, code: lines.slice(start, end).join('\n') });
    i = end;
  }
  return blocks;
}

/**
 * better-sqlite3 12 installs a prebuilt binary when it can download one and compiles SQLite from
 * source when it cannot (2-5 minutes on 2 cores). Where this checkout already built it for this
 * Node.js, hand that binary to prebuild-install as a local prebuild, as the download would: the
 * README's commands stay as written and the check stays within its time budget. Without a built
 * binary here, the clone compiles.
 */
function localPrebuild(dir) {
  const pkgDir = join(root, 'node_modules', 'better-sqlite3');
  const binary = join(pkgDir, 'build', 'Release', 'better_sqlite3.node');
  if (!existsSync(binary)) return {};
  const { version } = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const prebuilds = join(dir, 'prebuilds');
  mkdirSync(prebuilds, { recursive: true });
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  execFileSync('tar', ['czf', join(prebuilds, name), '-C', pkgDir, 'build/Release/better_sqlite3.node']);
  log(`better-sqlite3 ${version}: local prebuild from this checkout's build`);
  return { npm_config_better_sqlite3_local_prebuilds: prebuilds };
}

function fail(reason, output = '') {
  process.stderr.write(`${output.slice(-12_000)}\ncheck-readme: FAILED: ${reason} (${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  process.exitCode = 1;
}

const scratch = mkdtempSync(join(tmpdir(), 'router-fleet-readme-'));
const clone = join(scratch, 'router-fleet');
try {
  execFileSync('git', ['clone', '--quiet', '--no-hardlinks', root, clone], { stdio: 'inherit' });
  const blocks = markedBlocks(readFileSync(join(clone, 'README.md'), 'utf8'));
  if (blocks.length === 0) throw new Error(`README.md has no ${MARK} block`);
  log(`cloned into ${clone}; running ${blocks.length} README block(s) (lines ${blocks.map((b) => b.line).join(', ')})`);
  const script = [
    'set -euo pipefail',
    ...blocks.map((b) => `# README.md:${b.line}\n${b.code}`),
    '# check-readme: the router registered above must become managed',
    `for i in $(seq 1 ${MANAGED_WITHIN_S}); do`,
    '  if curl -sf --cacert "$CA" -H "authorization: Bearer $TOKEN" "$URL/api/inventory/managed-devices/$DEVICE" | grep -q \'"admission":"managed"\'; then',
    '    echo "check-readme: router $DEVICE is managed"; exit 0',
    '  fi',
    '  sleep 1',
    'done',
    `echo "check-readme: router $DEVICE not managed within ${MANAGED_WITHIN_S} s"; exit 1`,
  ].join('\n');
  // Its own process group, so the servers and agents it leaves in the background end with it.
  const child = spawn('bash', ['-c', script], {
    cwd: clone,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    // loglevel warn: a user sees engine warnings, and this check looks for them.
    env: { ...process.env, npm_config_loglevel: 'warn', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_update_notifier: 'false', ...localPrebuild(scratch) },
  });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const timer = setTimeout(() => {
    output += `\n(killed after ${DEADLINE_MS / 1000} s)\n`;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }, DEADLINE_MS);
  const code = await new Promise((res) => child.once('close', (c) => res(c)));
  clearTimeout(timer);
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    // the group is already empty
  }
  if (code !== 0) {
    fail(`the README's commands failed (exit ${code})`, output);
  } else if (/EBADENGINE/.test(output)) {
    fail(`npm install warned about engines on Node.js ${process.version}`, output);
  } else {
    const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: clone, encoding: 'utf8' });
    if (dirty.trim() !== '') fail(`the commands left files that are neither committed nor git-ignored, or changed committed ones:\n${dirty}`, output);
    else log(`the README's walkthrough works on a fresh clone (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
} catch (err) {
  fail(err.message);
} finally {
  // Give the process group a moment to exit before its files go.
  await new Promise((r) => setTimeout(r, 500));
  rmSync(scratch, { recursive: true, force: true });
}
