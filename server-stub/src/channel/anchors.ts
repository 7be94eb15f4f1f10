import { Buffer } from 'node:buffer';
import { createMessage, encode, MAX_FRAME_BYTES } from '@router-fleet/protocol';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { TrustAnchorService } from '../pki/trust-anchors.js';
import type { Session, Sessions } from './session.js';
import type { SessionIo } from './session-io.js';

export interface AnchorOffersDeps {
  readonly trust: Pick<TrustAnchorService, 'forAccount' | 'forget' | 'reload'>;
  /** The row id of an account, by uuid. */
  readonly accountKey: (accountUuid: string) => number | undefined;
  readonly clock: Clock;
  readonly log: Logger;
  readonly sessions: Sessions;
  readonly io: SessionIo;
}

/** The trust anchors open sessions are offered: after the welcome, on a new digest, on a change. */
export class AnchorOffers {
  constructor(private readonly deps: AnchorOffersDeps) {}

  /**
   * Sends the account's trust anchors when the device reported another digest (once per set and
   * session: a device that refuses a set is not sent it again in a loop). Agents before protocol 1.1
   * report no digest and are sent nothing (they would not understand the message).
   */
  offer(s: Session, now: number = this.deps.clock.now()): void {
    const { log } = this.deps;
    if (s.anchorsDigest === undefined || s.state !== 'open') return;
    let set;
    try {
      set = this.deps.trust.forAccount(s.accountKey);
    } catch (err) {
      log.error({ err, device: s.deviceUuid }, 'trust anchors unavailable');
      return;
    }
    if (set.anchors.length === 0 || set.digest === s.anchorsDigest || set.digest === s.anchorsSent) return;
    s.anchorsSent = set.digest;
    const text = encode(createMessage('trust-anchors', { anchors: [...set.anchors], digest: set.digest }, { sentAt: now }));
    // A frame the device must refuse would close its session on every connect: send none (the
    // account's policy check keeps sets far below the limit; this guards the server's own roots).
    if (Buffer.byteLength(text) > MAX_FRAME_BYTES) {
      log.error({ device: s.deviceUuid, bytes: Buffer.byteLength(text) }, 'trust-anchor set larger than a frame; not sent');
      return;
    }
    this.deps.io.send(s, text);
  }

  /** A notice: the set of one account (uuid) or of every account (null) changed. */
  async changed(accountUuid: string | null): Promise<void> {
    const { trust, sessions } = this.deps;
    try {
      if (accountUuid === null) await trust.reload(false);
      else trust.forget(this.deps.accountKey(accountUuid) ?? null);
    } catch (err) {
      this.deps.log.error({ err }, 'reloading trust anchors failed');
      return;
    }
    const now = this.deps.clock.now();
    const targets = accountUuid === null ? sessions.admitted() : sessions.ofAccount(accountUuid);
    for (const s of targets) this.offer(s, now);
  }
}
