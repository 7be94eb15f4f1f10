import { createMessage, encode, type MessageOf } from '@router-fleet/protocol';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { ChannelRepository } from '../store/channel.js';
import type { DeviceStatusBuffer } from '../store/device-status.js';
import { TickBatch } from '../tick-batch.js';
import type { Session } from './session.js';
import type { SessionIo } from './session-io.js';

export interface IngestDeps {
  /** Latest status per device, written with the presence flush. */
  readonly status: Pick<DeviceStatusBuffer, 'status'>;
  readonly events: Pick<ChannelRepository, 'recordDeviceEvents'>;
  readonly clock: Clock;
  readonly log: Logger;
  readonly io: SessionIo;
  /** The device reported another trust-anchor digest than before on this session. */
  readonly anchorsReported: (s: Session) => void;
}

/**
 * Longest pause between two event transactions (ms); the pause is what the last one cost (TickBatch's
 * `gapMs`, as the admission gate does): under a reconnect wave, devices' events arrived one or two
 * per tick, each tick a write transaction of its own (on PostgreSQL three round trips on the event
 * loop and a turn of the write lock).
 */
const EVENTS_GAP_MAX_MS = 25;

/**
 * What an open session reports: `status` (buffered, the latest wins) and `event` (stored in one
 * transaction per tick, paced, then acked by seq).
 */
export class Ingest {
  readonly #events = new TickBatch<{ s: Session; msg: MessageOf<'event'> }>(
    (batch) => this.#flushEvents(batch),
    undefined,
    () => Math.min(EVENTS_GAP_MAX_MS, this.#lastFlushMs),
  );

  /** What the last event transaction took (ms). */
  #lastFlushMs = 0;

  constructor(private readonly deps: IngestDeps) {}

  status(s: Session, msg: MessageOf<'status'>, now: number): void {
    this.deps.status.status(s.deviceKey, msg.body, now);
    if (msg.body.trustAnchorsDigest !== undefined && msg.body.trustAnchorsDigest !== s.anchorsDigest) {
      s.anchorsDigest = msg.body.trustAnchorsDigest;
      this.deps.anchorsReported(s);
    }
  }

  event(s: Session, msg: MessageOf<'event'>): void {
    this.#events.push({ s, msg });
  }

  /** Stores the events still queued (shutdown). */
  drain(): void {
    this.#events.drain();
  }

  /**
   * Stores the events of this tick in one transaction (durable before the ack), then acks each
   * by its seq. A seq seen before is ignored by the event log's dedupe key and acked again.
   */
  #flushEvents(batch: { s: Session; msg: MessageOf<'event'> }[]): void {
    const { deps } = this;
    const now = deps.clock.now();
    const started = performance.now();
    try {
      deps.events.recordDeviceEvents(
        batch.map(({ s, msg }) => ({ accountKey: s.accountKey, deviceUuid: s.deviceUuid, ...msg.body })),
        now,
      );
    } catch (err) {
      // Not stored, not acked: the device keeps the events in its outbox and resends them.
      deps.log.error({ err, count: batch.length }, 'storing device events failed');
      return;
    } finally {
      this.#lastFlushMs = performance.now() - started;
    }
    for (const { s, msg } of batch) {
      if (s.state !== 'open') continue;
      deps.io.send(s, encode(createMessage('ack', { seqs: [msg.body.seq] }, { correlationId: msg.id, sentAt: now }), { validate: false }));
    }
  }
}
