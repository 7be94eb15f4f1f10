import { Buffer } from 'node:buffer';
import type { EventBody } from '@router-fleet/protocol';
import type { Clock, Storage } from '../platform/platform.js';

const FILE = 'outbox.log';

type Details = NonNullable<EventBody['details']>;

/**
 * The persistent event outbox: events get a per-device sequence number (kept across reboots) and
 * stay until the server acknowledges their `seq`. Bounded: beyond `max` pending events the oldest
 * are dropped (and counted). Stored as an append-only log of JSON lines (`{"e":event}`,
 * `{"a":[seq…]}`, `{"s":nextSeq}`), each append fsynced, compacted when mostly acknowledged. A torn
 * last line after a power cut is ignored.
 */
export class Outbox {
  readonly #storage: Storage;
  readonly #clock: Clock;
  readonly #max: number;
  #pending: EventBody[] = [];
  #nextSeq = 1;
  #logLines = 0;
  dropped = 0;
  #chain: Promise<void> = Promise.resolve();

  constructor(storage: Storage, clock: Clock, max: number) {
    this.#storage = storage;
    this.#clock = clock;
    this.#max = max;
  }

  async load(): Promise<void> {
    const bytes = await this.#storage.read(FILE);
    this.#pending = [];
    this.#logLines = 0;
    if (!bytes) return;
    const byseq = new Map<number, EventBody>();
    for (const line of Buffer.from(bytes).toString('utf8').split('\n')) {
      if (line === '') continue;
      let record: { e?: EventBody; a?: number[]; s?: number };
      try {
        record = JSON.parse(line);
      } catch {
        continue; // torn write
      }
      this.#logLines++;
      if (record.s !== undefined) this.#nextSeq = Math.max(this.#nextSeq, record.s);
      if (record.e) {
        byseq.set(record.e.seq, record.e);
        this.#nextSeq = Math.max(this.#nextSeq, record.e.seq + 1);
      }
      if (record.a) for (const seq of record.a) byseq.delete(seq);
    }
    this.#pending = [...byseq.values()].sort((x, y) => x.seq - y.seq);
  }

  get size(): number {
    return this.#pending.length;
  }

  pending(): readonly EventBody[] {
    return this.#pending;
  }

  /** Records an event durably and returns it (with its seq). */
  add(kind: string, severity: EventBody['severity'], details?: Details): Promise<EventBody> {
    return this.#serial(async () => {
      const event: EventBody = { seq: this.#nextSeq++, kind, severity, at: this.#clock.now(), ...(details ? { details } : {}) };
      await this.#storage.append(FILE, Buffer.from(`${JSON.stringify({ e: event })}\n`));
      this.#logLines++;
      this.#pending.push(event);
      if (this.#pending.length > this.#max) {
        const drop = this.#pending.splice(0, this.#pending.length - this.#max);
        this.dropped += drop.length;
        await this.#storage.append(FILE, Buffer.from(`${JSON.stringify({ a: drop.map((e) => e.seq) })}\n`));
        this.#logLines++;
      }
      await this.#maybeCompact();
      return event;
    });
  }

  /** Removes acknowledged events. */
  ack(seqs: readonly number[]): Promise<void> {
    return this.#serial(async () => {
      const set = new Set(seqs);
      const before = this.#pending.length;
      this.#pending = this.#pending.filter((e) => !set.has(e.seq));
      if (this.#pending.length === before) return;
      await this.#storage.append(FILE, Buffer.from(`${JSON.stringify({ a: [...set] })}\n`));
      this.#logLines++;
      await this.#maybeCompact();
    });
  }

  async #maybeCompact(): Promise<void> {
    if (this.#logLines < 64 || this.#logLines < 4 * (this.#pending.length + 1)) return;
    const lines = [JSON.stringify({ s: this.#nextSeq }), ...this.#pending.map((e) => JSON.stringify({ e }))];
    if (this.#pending.length === 0 && this.#nextSeq === 1) {
      await this.#storage.remove(FILE);
      this.#logLines = 0;
      return;
    }
    await this.#storage.write(FILE, Buffer.from(`${lines.join('\n')}\n`));
    this.#logLines = lines.length;
  }

  /** Resolves when pending writes are done. */
  idle(): Promise<void> {
    return this.#chain;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn);
    this.#chain = run.then(
      () => {},
      () => {},
    );
    return run;
  }
}
