import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Logger } from 'pino';
import { LocalNoticeBus, type Notice, type NoticeBus } from '../../channel/notices.js';

/**
 * PostgreSQL's NOTIFY payloads must stay under 8,000 bytes: notices naming many devices travel as
 * several notifications of at most this many device uuids (36 characters and quotes each).
 */
const UUIDS_PER_NOTIFICATION = 150;
/** Reconnect delays after the listening connection is lost (ms): doubling, capped. */
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10_000;
/**
 * Most notices kept for the others while the bus has not started yet (a server builds its app,
 * whose heartbeats and sweeps may already publish, before it starts its bus); more are dropped.
 */
const EARLY_MAX = 1000;

interface Envelope {
  /** The bus that published it (its own notifications come back to it and are skipped). */
  readonly from: string;
  readonly notice: Notice;
}

/** A notice cut into pieces that each fit one notification. */
export function splitNotice(notice: Notice): Notice[] {
  if (notice.kind !== 'admission' && notice.kind !== 'device-deleted') return [notice];
  const uuids = notice.deviceUuids;
  if (uuids.length <= UUIDS_PER_NOTIFICATION) return [notice];
  const parts: Notice[] = [];
  for (let i = 0; i < uuids.length; i += UUIDS_PER_NOTIFICATION) parts.push({ ...notice, deviceUuids: uuids.slice(i, i + UUIDS_PER_NOTIFICATION) });
  return parts;
}

/**
 * The notice bus of server processes that share a PostgreSQL store without sharing anything else
 * (independent hosts): a notice published here is delivered to this process's listeners at once and
 * sent with `pg_notify` on a channel named after the store's schema; every other process LISTENs
 * on it with a connection of its own (the store's connection is synchronous and cannot wait for
 * notifications) and delivers what others published.
 *
 * Notices published before `start` are kept (up to EARLY_MAX) and sent once the connection listens.
 * Delivery is at most once, like the node:cluster bus's: a process whose listening connection is
 * down misses what is sent meanwhile, and a notice only ever concerns open sessions, whose devices
 * get the current state from the store when they next say hello (admission, trust anchors,
 * settings); jobs do not depend on notices (every process claims from the store each second;
 * `jobs-runnable` only makes that sooner).
 */
export class PostgresNoticeBus extends LocalNoticeBus implements NoticeBus {
  readonly #id = randomUUID();
  readonly #url: string;
  #log: Logger | undefined;
  #client: pg.Client | undefined;
  #channel: string | undefined;
  #closed = false;
  #retryMs = RECONNECT_MIN_MS;
  #timer: NodeJS.Timeout | undefined;
  #sending: Promise<void> = Promise.resolve();
  /** Published before the listening connection first came up, to send once it has (then undefined). */
  #early: Notice[] | undefined = [];
  #earlyDropped = 0;

  constructor(url: string) {
    super();
    this.#url = url;
  }

  /** Connects the listening connection; resolves once it LISTENs (later losses reconnect on their own). */
  async start(log: Logger): Promise<void> {
    this.#log = log;
    await this.#connect();
  }

  /** Whether the listening connection is up (for tests and health). */
  get listening(): boolean {
    return this.#client !== undefined;
  }

  async #connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.#url, application_name: 'fleet-server notices' });
    client.on('error', (err) => this.#lost(client, err));
    client.on('end', () => this.#lost(client));
    // Before LISTEN: notifications that arrive with LISTEN's answer are emitted in the same turn,
    // before an await after it would resume.
    client.on('notification', (m) => {
      if (!this.#closed) this.#received(m.payload);
    });
    await client.connect();
    try {
      const schema = (await client.query<{ s: string }>('SELECT current_schema() AS s')).rows[0]?.s ?? 'public';
      // One channel per schema: tests put several stores in one database.
      this.#channel = `fleet_notices_${schema}`.slice(0, 63);
      await client.query(`LISTEN ${pg.escapeIdentifier(this.#channel)}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    if (this.#closed) {
      // Closed while connecting (at start, or a reconnect under way): this connection would
      // outlive the bus and keep the process from exiting.
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    this.#retryMs = RECONNECT_MIN_MS;
    const early = this.#early;
    this.#early = undefined;
    if (this.#earlyDropped > 0) {
      this.#log?.warn({ dropped: this.#earlyDropped }, 'notices: published before the bus started, beyond those it keeps; the other processes miss them');
    }
    for (const notice of early ?? []) this.#send(client, this.#channel, notice);
  }

  #lost(client: pg.Client, err?: Error): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    if (this.#closed) return;
    this.#log?.warn({ err }, 'notices: the PostgreSQL listening connection was lost; reconnecting');
    this.#reconnectSoon();
  }

  #reconnectSoon(): void {
    if (this.#timer || this.#closed) return;
    const delay = this.#retryMs;
    this.#retryMs = Math.min(RECONNECT_MAX_MS, this.#retryMs * 2);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect().catch((err: unknown) => {
        this.#log?.warn({ err }, 'notices: reconnecting to PostgreSQL failed');
        this.#reconnectSoon();
      });
    }, delay);
    this.#timer.unref();
  }

  #received(payload: string | undefined): void {
    if (!payload) return;
    let env: Envelope;
    try {
      env = JSON.parse(payload) as Envelope;
    } catch {
      this.#log?.warn('notices: a notification that is not JSON was ignored');
      return;
    }
    if (env.from === this.#id || typeof env.notice?.kind !== 'string') return;
    try {
      this.deliver(env.notice);
    } catch (err) {
      this.#log?.error({ err }, 'notices: delivering a notice of another process failed');
    }
  }

  override publish(notice: Notice): void {
    this.deliver(notice);
    const client = this.#client;
    const channel = this.#channel;
    if (client && channel) this.#send(client, channel, notice);
    else if (this.#early && !this.#closed) {
      if (this.#early.length < EARLY_MAX) this.#early.push(notice);
      else this.#earlyDropped++;
    } else if (this.#log) this.#log.warn({ kind: notice.kind }, 'notices: not connected to PostgreSQL; the other processes miss this notice');
  }

  /** Sends a notice to the other processes: one query at a time on the connection (pg queues them, but asks callers to), in publish order. */
  #send(client: pg.Client, channel: string, notice: Notice): void {
    for (const part of splitNotice(notice)) {
      const payload = JSON.stringify({ from: this.#id, notice: part } satisfies Envelope);
      this.#sending = this.#sending
        .then(() => client.query('SELECT pg_notify($1, $2)', [channel, payload]))
        .then(
          () => undefined,
          (err: unknown) => {
            this.#log?.warn({ err, kind: notice.kind }, 'notices: sending to the other processes failed');
          },
        );
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#sending;
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }
}
