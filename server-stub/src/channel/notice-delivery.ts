import { CloseCodes, createMessage, encode } from '@router-fleet/protocol';
import type { Clock } from '../clock.js';
import type { AnchorOffers } from './anchors.js';
import type { Notice } from './notices.js';
import type { Session, Sessions } from './session.js';
import type { SessionIo } from './session-io.js';

export interface NoticeDeliveryDeps {
  readonly sessions: Sessions;
  readonly io: SessionIo;
  readonly clock: Clock;
  readonly anchors: Pick<AnchorOffers, 'changed'>;
  /** An open session's admission changed (licence-change sent): for the session listeners. */
  readonly admissionChanged: (s: Session) => void;
}

/** Tells the open sessions this process holds about admission, settings and trust-anchor changes, and ends deleted devices' sessions. */
export class NoticeDelivery {
  constructor(private readonly deps: NoticeDeliveryDeps) {}

  deliver(n: Notice): void {
    const { sessions, io } = this.deps;
    const now = this.deps.clock.now();
    if (n.kind === 'admission') {
      for (const uuid of n.deviceUuids) {
        const s = sessions.open(uuid);
        if (!s || s.admission === n.state) continue;
        s.admission = n.state;
        const body =
          n.state === 'unmanaged'
            ? {
                admission: 'unmanaged' as const,
                reason: 'LICENCE_EXPIRED',
                reasonMessage: 'Licences ended; this device connected beyond the limit.',
              }
            : { admission: 'managed' as const, reason: 'LICENCE_AVAILABLE', reasonMessage: 'A licence is free for this device.' };
        io.send(s, encode(createMessage('licence-change', body, { sentAt: now })));
        this.deps.admissionChanged(s);
      }
      return;
    }
    if (n.kind === 'device-deleted') {
      for (const uuid of n.deviceUuids) {
        const s = sessions.open(uuid);
        if (s) io.close(s, CloseCodes.AUTH_FAILED, 'device deleted');
      }
      return;
    }
    // For the job dispatchers (createServices subscribes them); nothing to tell the sessions.
    if (n.kind === 'jobs-runnable') return;
    if (n.kind === 'trust-anchors') {
      void this.deps.anchors.changed(n.accountUuid);
      return;
    }
    const text = encode(createMessage('settings', { analyticsConsent: n.analyticsConsent }, { sentAt: now }));
    for (const s of sessions.ofAccount(n.accountUuid)) if (s.state === 'open') io.send(s, text);
  }
}
