import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** One line of the profile: round trips of one statement text (or transaction step) and what they cost. */
interface Entry {
  count: number;
  totalMs: number;
  maxMs: number;
  /** The first frame outside the store: who issues it (at most `MAX_CALLERS` kept, by count). */
  callers: Record<string, number>;
}

const MAX_CALLERS = 16;
/** Stores opened by this process so far: each gets a file of its own. */
let opened = 0;
const WRITE_EVERY_MS = 10_000;

/**
 * Counts the PostgreSQL store's round trips by statement text (whitespace folded, first 120
 * characters; BEGIN / COMMIT / SAVEPOINT under their own names) with their total and longest
 * time and the code that issued them, and writes them as JSON to `DIR/pg-profile-PID-N.json` (N: the process's Nth store) every
 * 10 s and when the process exits. Enabled by the server's `storeProfile` option
 * (`FLEET_SERVER_STORE_PROFILE=DIR`); without it the store holds no profile and pays nothing.
 * What it is for: finding the statements whose count grows with devices × messages during a scale
 * run (BENCHMARKS.md, "Statements per device on PostgreSQL").
 */
export class StatementProfile {
  readonly #file: string;
  readonly #entries = new Map<string, Entry>();
  readonly #started = Date.now();
  readonly #timer: NodeJS.Timeout;
  readonly #onExit = (): void => this.write();

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true });
    this.#file = join(dir, `pg-profile-${process.pid}-${++opened}.json`);
    this.#timer = setInterval(this.#onExit, WRITE_EVERY_MS).unref();
    process.on('exit', this.#onExit);
  }

  /** Records one round trip of `what` that took `ms`. */
  record(what: string, ms: number): void {
    const key = what.replace(/\s+/g, ' ').trim().slice(0, 120);
    let e = this.#entries.get(key);
    if (!e) this.#entries.set(key, (e = { count: 0, totalMs: 0, maxMs: 0, callers: {} }));
    e.count++;
    e.totalMs += ms;
    if (ms > e.maxMs) e.maxMs = ms;
    const caller = callerFrame();
    if (caller in e.callers || Object.keys(e.callers).length < MAX_CALLERS) e.callers[caller] = (e.callers[caller] ?? 0) + 1;
    else e.callers['(other)'] = (e.callers['(other)'] ?? 0) + 1;
  }

  write(): void {
    const statements = [...this.#entries].map(([sql, e]) => ({ sql, ...e, totalMs: Math.round(e.totalMs), maxMs: Math.round(e.maxMs * 10) / 10 }));
    statements.sort((a, b) => b.totalMs - a.totalMs);
    const roundTrips = statements.reduce((n, s) => n + s.count, 0);
    const body = { pid: process.pid, startedAt: new Date(this.#started).toISOString(), writtenAt: new Date().toISOString(), roundTrips, statements };
    try {
      writeFileSync(this.#file, `${JSON.stringify(body, null, 1)}\n`);
    } catch {
      // A diagnostic: a full disk or a removed directory must not take the server down.
    }
  }

  close(): void {
    clearInterval(this.#timer);
    process.off('exit', this.#onExit);
    this.write();
  }
}

/** The first stack frame outside the store's own files, as `file.js:line`. */
function callerFrame(): string {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 30;
  const stack = new Error().stack?.split('\n') ?? [];
  Error.stackTraceLimit = limit;
  for (const line of stack.slice(1)) {
    if (/[\\/]store[\\/](postgres[\\/])?[^\\/]+\.[jt]s:/.test(line) || line.includes('node:')) continue;
    const m = /([^\\/(\s]+[\\/][^\\/(\s]+\.[jt]s):(\d+)/.exec(line);
    if (m) return `${m[1]}:${m[2]}`;
  }
  return '(store)';
}
