import { CloseCodes, correlationIdOf, type ProtocolError } from '@router-fleet/protocol';
import type { Metrics } from '../metrics.js';
import type { Session } from './session.js';
import type { SessionIo } from './session-io.js';

export interface BadInputDeps {
  readonly io: SessionIo;
  readonly metrics: Metrics;
  /** Bad messages in a row after which an admitted device is closed (config `channelMaxBadMessages`). */
  readonly maxBadMessages: number;
}

/**
 * Frames that do not decode: each protocol error is answered with its code, and mapped to the
 * protocol's close code where the frame itself is unusable.
 */
export class BadInput {
  constructor(private readonly deps: BadInputDeps) {}

  /** A binary frame: the protocol is text only. */
  binary(s: Session): void {
    this.deps.metrics.inc('fleet_channel_errors_total', { code: 'BINARY_FRAME' });
    this.deps.io.close(s, CloseCodes.PROTOCOL_ERROR, 'binary frames are not accepted');
  }

  message(s: Session, err: ProtocolError, data: Buffer): void {
    const { io } = this.deps;
    this.deps.metrics.inc('fleet_channel_errors_total', { code: err.code });
    const correlationId = correlationIdOf(err, data);
    switch (err.code) {
      case 'PROTO_TOO_LARGE':
        return io.close(s, CloseCodes.MESSAGE_TOO_BIG, 'frame too large');
      case 'PROTO_INVALID_UTF8':
        return io.close(s, CloseCodes.INVALID_PAYLOAD, 'invalid UTF-8');
      case 'PROTO_UNSUPPORTED_VERSION':
        io.protoError(s, err, correlationId);
        return io.close(s, CloseCodes.UNSUPPORTED_VERSION, 'unsupported protocol version');
      default:
        break;
    }
    io.protoError(s, err, correlationId);
    if (s.state === 'awaiting-hello' || s.state === 'admitting') return io.close(s, CloseCodes.HELLO_REQUIRED, 'hello required');
    // Schema violations and unknown types keep the channel open (a newer peer may fall back);
    // a run of bad messages is garbage, not a peer speaking a newer minor version.
    if (++s.badInRow >= this.deps.maxBadMessages) {
      io.close(s, CloseCodes.POLICY_VIOLATION, 'too many bad messages');
    }
  }
}
