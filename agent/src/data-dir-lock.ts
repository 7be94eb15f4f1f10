import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AgentError } from './errors.js';

/** The lock file in the data directory: `{"pid":…,"host":…,"since":…}` of the agent that runs on it. */
export const LOCK_FILE = 'agent.lock';

interface LockRecord {
  pid: number;
  host: string;
  since: string;
}

/** A held lock: release it when the agent stops (a killed agent leaves it; the next start takes it over). */
export interface DataDirLock {
  readonly file: string;
  release(): Promise<void>;
}

/** Whether a process with this id exists on this machine (EPERM: it exists, it is someone else's). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** How long an unreadable lock counts as one being written (ms): create and write are two steps. */
const UNWRITTEN_GRACE_MS = 2000;

async function youngerThan(file: string, ms: number): Promise<boolean> {
  const info = await stat(file).catch(() => undefined);
  return info !== undefined && Date.now() - info.mtimeMs < ms;
}

function parse(text: string): LockRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<LockRecord>;
    return Number.isInteger(r.pid) && (r.pid as number) > 0 ? { pid: r.pid!, host: String(r.host ?? ''), since: String(r.since ?? '') } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the data directory for this process: two agents on one directory would interleave their
 * journals, outboxes and firmware slots. The lock is a file created exclusively (`wx`); when it
 * exists and names a live process of this host, the start fails with AGENT_DATA_DIR_LOCKED (exit
 * 73). A lock left by a process that no longer runs (SIGKILL, power cut) — or an unreadable one
 * older than UNWRITTEN_GRACE_MS — is stale and taken over: renamed aside atomically (only one of
 * two racing starts wins the rename) and checked to be the stale one that was read before it is
 * deleted.
 *
 * A lock written on another host (a container recreated under a new hostname on the same volume)
 * cannot be checked and counts as stale: the data directory is the router's local storage, and
 * an agent locked out of it for good would be worse than the rare shared volume (which the README
 * rules out: one volume per router). A lock naming our own pid is stale too (a container's agent
 * is pid 1 on every start).
 *
 * Known limit: after a reboot the dead agent's pid may belong to another process; the lock then
 * looks live until that process ends. Supervisors do not restart after exit 73, so an operator
 * sees the message naming the file to remove.
 */
export async function lockDataDir(dataDir: string, pid = process.pid): Promise<DataDirLock> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, LOCK_FILE);
  const mine: LockRecord = { pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o600);
      try {
        // No fsync: after a power cut the lock is meaningless anyway (its pid is gone), and an empty
        // or missing file left by the cut is handled like a stale one.
        await handle.writeFile(`${JSON.stringify(mine)}\n`);
      } finally {
        await handle.close();
      }
      return {
        file,
        release: async () => {
          // Only our own lock: a takeover after a long freeze must not be undone by us.
          const now = parse(await readFile(file, 'utf8').catch(() => ''));
          if (now?.pid === pid) await rm(file, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new AgentError('AGENT_STORAGE_FAILED', `cannot create ${file}: ${(error as Error).message}`, { cause: error });
      }
    }
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text === undefined) continue; // released in between: try again
    const holder = parse(text);
    if (!holder && (await youngerThan(file, UNWRITTEN_GRACE_MS))) {
      // Created by a start that has not written its pid yet: not stale, look again shortly.
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    if (holder && holder.pid !== pid && alive(holder.pid) && (holder.host === '' || holder.host === mine.host)) {
      throw new AgentError(
        'AGENT_DATA_DIR_LOCKED',
        `${dataDir} is in use by the agent with pid ${holder.pid} (since ${holder.since}); if no such agent runs, remove ${file}`,
      );
    }
    // Stale (dead pid, another host's leftover, unreadable): move it aside, and delete it only if
    // it is still the one judged stale; a fresh lock moved aside by a lost race is put back.
    const aside = `${file}.stale-${pid}`;
    try {
      await rename(file, aside);
    } catch {
      continue;
    }
    const moved = await readFile(aside, 'utf8').catch(() => undefined);
    if (moved === text) await rm(aside, { force: true });
    else await rename(aside, file).catch(() => undefined);
  }
  throw new AgentError('AGENT_DATA_DIR_LOCKED', `${file}: could not take the lock (other agents are starting on ${dataDir})`);
}
