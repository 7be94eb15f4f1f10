import { CloseCodes, createMessage, encode } from '@router-fleet/protocol';
import type { Clock } from '../clock.js';
import type { Session, Sessions } from './session.js';
import type { SessionIo } from './session-io.js';

export interface KeepAliveDeps {
  readonly sessions: Sessions;
  readonly io: SessionIo;
  /** Server clock (the `sentAt` of pings). */
  readonly clock: Clock;
  /** Monotonic milliseconds for all keep-alive timing. */
  readonly monotonic: () => number;
  /** How long a connection may go without a hello (config `helloTimeoutMs`). */
  readonly helloTimeoutMs: number;
}

/**
 * The one keep-alive timer for all sessions: hello deadlines, pings after `pingIntervalSec` of
 * silence, pong timeouts (close 4008: a half-open link), and the end of close handshakes that
 * never finish. Cost: one pass over the sessions per `channelSweepMs`.
 */
export class KeepAlive {
  constructor(private readonly deps: KeepAliveDeps) {}

  /** Anything heard from an open session proves the link; the next ping follows after a quiet interval. */
  heard(s: Session): void {
    s.pingSentAt = null;
  }

  sweep(): void {
    const { sessions, io, clock } = this.deps;
    const t = this.deps.monotonic();
    const helloTimeout = this.deps.helloTimeoutMs;
    // Overdue sessions are closed only after the next I/O poll: timers run before pending socket
    // reads, so on a busy server a hello or pong already in the socket buffer would otherwise be
    // taken for silence. setImmediate runs after the poll phase, when those bytes have been read.
    const noHello: Session[] = [];
    const noPong: { s: Session; sentAt: number }[] = [];
    for (const s of sessions.live()) {
      switch (s.state) {
        case 'awaiting-hello':
          if (t - s.openedAt >= helloTimeout) noHello.push(s);
          break;
        case 'open':
          if (s.pingSentAt !== null) {
            if (t - s.pingSentAt >= s.pongTimeoutMs) noPong.push({ s, sentAt: s.pingSentAt });
          } else if (t - s.lastHeardAt >= s.pingIntervalMs) {
            s.pingSentAt = t;
            io.send(s, encode(createMessage('ping', {}, { sentAt: clock.now() }), { validate: false }));
          }
          break;
        case 'closing':
        case 'replaced':
        case 'refusing':
          if (t >= s.closeBy) s.transport.terminate();
          break;
        default:
          break;
      }
    }
    if (noHello.length + noPong.length > 0) {
      setImmediate(() => {
        for (const s of noHello) {
          if (s.state !== 'awaiting-hello') continue;
          io.error(s, 'SERVER_HELLO_REQUIRED', 'no hello within the hello timeout');
          io.close(s, CloseCodes.HELLO_REQUIRED, 'hello timeout');
        }
        for (const { s, sentAt } of noPong) {
          if (s.state === 'open' && s.pingSentAt === sentAt) io.close(s, CloseCodes.PONG_TIMEOUT, 'pong timeout');
        }
      });
    }
  }
}
