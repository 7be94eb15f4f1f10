import { CloseCodes, createMessage, encode, errorReplyBody, type ProtocolError } from '@router-fleet/protocol';
import type { Clock } from '../clock.js';
import type { ServerErrorCode } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Session, Sessions } from './session.js';

/** Time for a close handshake before the link is ended (ms). */
export const CLOSE_GRACE_MS = 2_000;

export interface SessionIoDeps {
  readonly sessions: Sessions;
  readonly metrics: Metrics;
  readonly clock: Clock;
  /** Monotonic milliseconds (close deadlines). */
  readonly monotonic: () => number;
  /** A peer with more unsent bytes than this is dropped (config `channelMaxBufferedBytes`). */
  readonly maxBufferedBytes: number;
}

/**
 * Sending to a session and closing it: the slow-reader rule, the `error` messages, and the one
 * way the server starts a close (a state move, a close code, a deadline for the sweep).
 */
export class SessionIo {
  constructor(private readonly deps: SessionIoDeps) {}

  send(s: Session, text: string): boolean {
    const t = s.transport;
    if (!t.writable) return false;
    // A peer that does not read: its queue is bounded; only it is dropped, the others are not slowed.
    if (t.bufferedAmount > this.deps.maxBufferedBytes) {
      this.deps.metrics.inc('fleet_channel_closes_total', { code: String(CloseCodes.POLICY_VIOLATION) });
      this.deps.metrics.inc('fleet_channel_errors_total', { code: 'SLOW_CONSUMER' });
      // A close frame would queue behind the unread bytes: end the link at once.
      t.terminate();
      return false;
    }
    t.send(text);
    this.deps.metrics.inc('fleet_messages_out_total');
    return true;
  }

  error(s: Session, code: ServerErrorCode, message: string, correlationId?: string): void {
    const opts = { sentAt: this.deps.clock.now(), ...(correlationId ? { correlationId } : {}) };
    this.send(s, encode(createMessage('error', { code, message, retryable: false }, opts)));
  }

  protoError(s: Session, err: ProtocolError, correlationId: string | undefined): void {
    const opts = { sentAt: this.deps.clock.now(), ...(correlationId ? { correlationId } : {}) };
    this.send(s, encode(createMessage('error', errorReplyBody(err), opts)));
  }

  /**
   * The server closes `s` with `code`: before admission it is refused, after it is closed (its end
   * then releases the lease); a session already closing is left alone. The sweep ends the link if
   * the close handshake has not finished within CLOSE_GRACE_MS.
   */
  close(s: Session, code: number, reason: string): void {
    const state = s.state;
    if (state === 'awaiting-hello' || state === 'admitting') this.deps.sessions.move(s, 'refuse');
    else if (state === 'open') this.deps.sessions.move(s, 'close');
    else return;
    this.startClose(s, code, reason);
  }

  /** The close of a session already moved to a closing state (replaced). */
  startClose(s: Session, code: number, reason: string): void {
    this.deps.metrics.inc('fleet_channel_closes_total', { code: String(code) });
    s.closeBy = this.deps.monotonic() + CLOSE_GRACE_MS;
    s.transport.close(code, reason);
  }
}
