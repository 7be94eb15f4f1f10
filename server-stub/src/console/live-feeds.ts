import type { Logger } from 'pino';
import { eventView } from '../routes/events.js';
import { jobDeviceView } from '../routes/jobs.js';
import { iso } from '../routes/schemas.js';
import type { Services } from '../services.js';
import { type AccountLive, type FleetCounts, type JobDeviceChangeRow, JobLive } from '../store/live.js';
import type { AccountScope } from '../store/scope.js';

/**
 * The console's live data, read from the store once a period and shared by every subscriber of
 * the same topic (an account's fleet, or one job): a hundred operators watching the dashboard cost
 * one read a second, not a hundred. Only what changed since the last read is sent.
 *
 * It reads the store, never in-process events: in cluster mode the devices and job results are
 * handled by other worker processes, which only share the SQLite file with this one.
 */

/** Where a subscriber's messages go (an SSE connection). `event` names the message type. */
export interface LiveSink {
  send(event: string, data: unknown): void;
  /** Ends the subscription from the server side (its session ended, the job was deleted). */
  end(reason: string): void;
}

export interface LiveFeedOptions {
  /** Store read period (ms); default 1000. */
  readonly periodMs?: number;
  /** How often a subscriber's session is checked again (ms); default 5000. */
  readonly authCheckMs?: number;
}

/** Events in a fleet snapshot (the latest ones) and most sent in one tick. */
export const FLEET_EVENT_LIMIT = 20;
/**
 * How far back (ms of the writers' clock) each job read looks again. An execution written by
 * another process commits a little after the time it records; within this window it is still
 * found (and ones already sent are recognised and skipped).
 */
const JOB_OVERLAP_MS = 5_000;
/** Executions read per statement, and at most per tick (the rest follows in the next tick). */
const JOB_PAGE = 1_000;
const JOB_MAX_PER_TICK = 20_000;
/** Device changes per `devices` message. */
const JOB_MESSAGE_ROWS = 500;

interface Subscriber {
  readonly sink: LiveSink;
  /** Throws (or returns false) when the subscriber's session is no longer valid. */
  readonly stillAllowed: () => boolean;
  checkedAt: number;
}

interface FleetTopic {
  readonly kind: 'fleet';
  readonly live: AccountLive;
  readonly scope: AccountScope;
  readonly subscribers: Set<Subscriber>;
  counts: FleetCounts;
  lastEventId: number;
}

interface JobTopic {
  readonly kind: 'job';
  readonly jobId: number;
  readonly jobUuid: string;
  readonly scope: AccountScope;
  readonly subscribers: Set<Subscriber>;
  /** JSON of the last job message sent (state + progress counts). */
  lastJob: string;
  /** Newest execution change or finish seen (writers' clock, ms). */
  watermark: number;
  /** What was sent of each execution changed within the overlap window: id → [signature, updated_at]. */
  readonly seen: Map<number, [string, number]>;
}

type Topic = FleetTopic | JobTopic;

const signature = (r: JobDeviceChangeRow) =>
  `${r.state}|${r.percent}|${r.status}|${r.result}|${r.attempts}|${r.error_code}|${r.cancel_requested}|${r.admission}`;

export class LiveFeeds {
  readonly #services: Services;
  readonly #log: Logger;
  readonly #periodMs: number;
  readonly #authCheckMs: number;
  readonly #jobLive: JobLive;
  readonly #topics = new Map<string, Topic>();
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  /** Store reads made by ticks (tests check that subscribers share them). */
  reads = 0;

  constructor(services: Services, log: Logger, options: LiveFeedOptions = {}) {
    this.#services = services;
    this.#log = log;
    this.#periodMs = options.periodMs ?? 1000;
    this.#authCheckMs = options.authCheckMs ?? 5000;
    this.#jobLive = new JobLive(services.store);
  }

  /** Subscribers across all topics. */
  get size(): number {
    let n = 0;
    for (const t of this.#topics.values()) n += t.subscribers.size;
    return n;
  }

  /**
   * Subscribes to the account's fleet: at once a `counts` message and an `events` message (the
   * latest events, oldest first), then each of them again whenever it changed.
   */
  fleet(scope: AccountScope, sink: LiveSink, stillAllowed: () => boolean): () => void {
    const key = `fleet:${scope.accountId}`;
    let topic = this.#topics.get(key) as FleetTopic | undefined;
    if (!topic) {
      const live = scope.live;
      const read = this.#services.store.read(() => ({ counts: live.fleetCounts(), lastEventId: live.lastEventId() }));
      topic = { kind: 'fleet', live, scope, subscribers: new Set(), ...read };
      this.#topics.set(key, topic);
    }
    const last = topic.lastEventId;
    const events = scope.eventLog.list({ beforeId: last + 1, limit: FLEET_EVENT_LIMIT, filter: {} }).reverse();
    sink.send('counts', topic.counts);
    sink.send('events', { items: events.map(eventView), snapshot: true });
    return this.#add(key, topic, sink, stillAllowed);
  }

  /**
   * Subscribes to one job (its row id and uuid, of the caller's account): at once a `job` message
   * (state and progress counts), then `job` whenever they changed and `devices` with the rows of
   * the job's device list whose execution changed.
   */
  job(scope: AccountScope, job: { id: number; uuid: string }, sink: LiveSink, stillAllowed: () => boolean): () => void {
    const key = `job:${job.id}`;
    let topic = this.#topics.get(key) as JobTopic | undefined;
    if (!topic) {
      topic = { kind: 'job', jobId: job.id, jobUuid: job.uuid, scope, subscribers: new Set(), lastJob: '', watermark: 0, seen: new Map() };
      this.#primeJob(topic);
      this.#topics.set(key, topic);
    }
    sink.send('job', JSON.parse(topic.lastJob));
    return this.#add(key, topic, sink, stillAllowed);
  }

  /** Reads every topic once now (the timer calls this; tests may too). */
  tick(): void {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      const now = performance.now();
      for (const [key, topic] of this.#topics) {
        this.#checkSessions(topic, now);
        if (topic.subscribers.size === 0) {
          this.#topics.delete(key);
          continue;
        }
        try {
          if (topic.kind === 'fleet') this.#tickFleet(topic);
          else this.#tickJob(key, topic);
        } catch (err) {
          // A busy or failing store: the next tick tries again; subscribers keep what they have.
          this.#log.warn({ err, topic: key }, 'console live feed read failed');
        }
      }
    } finally {
      this.#ticking = false;
    }
    if (this.#topics.size === 0) this.#stop();
  }

  /** Ends every subscription (server shutdown). */
  close(): void {
    this.#stop();
    for (const topic of this.#topics.values()) {
      for (const s of topic.subscribers) s.sink.end('server-closing');
      topic.subscribers.clear();
    }
    this.#topics.clear();
  }

  #add(key: string, topic: Topic, sink: LiveSink, stillAllowed: () => boolean): () => void {
    const sub: Subscriber = { sink, stillAllowed, checkedAt: performance.now() };
    topic.subscribers.add(sub);
    this.#start();
    return () => {
      topic.subscribers.delete(sub);
      if (topic.subscribers.size === 0 && this.#topics.get(key) === topic) this.#topics.delete(key);
      if (this.#topics.size === 0) this.#stop();
    };
  }

  #start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.tick(), this.#periodMs);
    this.#timer.unref();
  }

  #stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #checkSessions(topic: Topic, now: number): void {
    for (const s of topic.subscribers) {
      if (now - s.checkedAt < this.#authCheckMs) continue;
      s.checkedAt = now;
      let ok = false;
      try {
        ok = s.stillAllowed();
      } catch {
        ok = false;
      }
      if (!ok) {
        topic.subscribers.delete(s);
        s.sink.end('session-ended');
      }
    }
  }

  #broadcast(topic: Topic, event: string, data: unknown): void {
    for (const s of topic.subscribers) s.sink.send(event, data);
  }

  #tickFleet(topic: FleetTopic): void {
    this.reads++;
    const { counts, events } = this.#services.store.read(() => ({
      counts: topic.live.fleetCounts(),
      events: topic.live.eventsAfter(topic.lastEventId, FLEET_EVENT_LIMIT),
    }));
    const c = topic.counts;
    if (
      c.total !== counts.total
      || c.online !== counts.online
      || c.unmanaged !== counts.unmanaged
      || c.offline !== counts.offline
      || c.rejected !== counts.rejected
    ) {
      topic.counts = counts;
      this.#broadcast(topic, 'counts', counts);
    }
    if (events.length > 0) {
      topic.lastEventId = events.at(-1)!.id;
      this.#broadcast(topic, 'events', { items: events.map(eventView), snapshot: false });
    }
  }

  /** The job's state and progress message, or undefined when the job is gone. */
  #jobMessage(topic: JobTopic): string | undefined {
    const head = this.#services.jobs.repo(topic.scope).byUuid(topic.jobUuid);
    if (!head) return undefined;
    return JSON.stringify({
      uuid: head.uuid,
      state: head.state,
      finishedAt: iso(head.finished_at),
      abortReason: head.abort_reason,
      progress: this.#services.jobs.progressView(head),
    });
  }

  #primeJob(topic: JobTopic): void {
    this.#services.store.read(() => {
      topic.lastJob = this.#jobMessage(topic) ?? 'null';
      // Executions changed before the subscription are in the device list the page loads.
      topic.watermark = this.#services.clock.now();
      this.#readChanges(topic, () => {});
    });
  }

  /**
   * Reads the job's executions changed since the watermark less the overlap (in flight: by last
   * change; finished: by finish time); `changed` gets the ones not sent in that state before.
   */
  #readChanges(topic: JobTopic, changed: (r: JobDeviceChangeRow) => void): void {
    const since = topic.watermark - JOB_OVERLAP_MS;
    const see = (r: JobDeviceChangeRow, at: number) => {
      const sig = signature(r);
      const prev = topic.seen.get(r.exec_id);
      if (!prev || prev[0] !== sig) changed(r);
      topic.seen.set(r.exec_id, [sig, at]);
      if (at > topic.watermark) topic.watermark = at;
    };
    for (const r of this.#jobLive.inFlightSince(topic.jobId, since)) see(r, r.updated_at);
    let fromAt = since;
    let fromId = 0;
    let read = 0;
    for (;;) {
      const rows = this.#jobLive.finishedAfter(topic.jobId, fromAt, fromId, JOB_PAGE);
      read += rows.length;
      for (const r of rows) see(r, r.finished_at ?? r.updated_at);
      if (rows.length < JOB_PAGE || read >= JOB_MAX_PER_TICK) break;
      fromAt = rows.at(-1)!.finished_at ?? fromAt;
      fromId = rows.at(-1)!.exec_id;
    }
    const horizon = topic.watermark - JOB_OVERLAP_MS;
    for (const [id, [, at]] of topic.seen) if (at < horizon) topic.seen.delete(id);
  }

  #tickJob(key: string, topic: JobTopic): void {
    this.reads++;
    const changed: JobDeviceChangeRow[] = [];
    const message = this.#services.store.read(() => {
      const msg = this.#jobMessage(topic);
      if (msg === undefined) return undefined;
      this.#readChanges(topic, (r) => changed.push(r));
      return msg;
    });
    if (message === undefined) {
      // The job was deleted: nothing more will come.
      for (const s of topic.subscribers) s.sink.end('job-gone');
      topic.subscribers.clear();
      this.#topics.delete(key);
      return;
    }
    for (let i = 0; i < changed.length; i += JOB_MESSAGE_ROWS) {
      this.#broadcast(topic, 'devices', { items: changed.slice(i, i + JOB_MESSAGE_ROWS).map(jobDeviceView) });
    }
    if (message !== topic.lastJob) {
      topic.lastJob = message;
      this.#broadcast(topic, 'job', JSON.parse(message));
    }
  }
}
