import type { FastifyBaseLogger } from 'fastify';
import type { LoginFailure } from '../auth/service.js';
import type { Metrics } from '../metrics.js';
import type { AuditService } from './service.js';

/** Most distinct user names and client addresses one summary lists (the counts stay exact). */
const MAX_LISTED = 20;

interface Pending {
  count: number;
  first: number;
  last: number;
  usernames: Set<string>;
  clients: Set<string>;
  locked: number;
}

/**
 * Failed logins go to the audit log as summaries, at most one record per account and period
 * (`POST /api/auth/login` with status 401, `after: {failures, from, to, usernames, clients}`): an
 * attacker guessing passwords cannot flood the log, and the account still sees that someone tried,
 * how often and from where. Failures for user names that do not exist belong to no account: they
 * are counted in `fleet_login_failures_total` and logged, never stored per name.
 */
export class FailedLoginAudit {
  readonly #pending = new Map<number, Pending>();

  constructor(
    private readonly audit: AuditService,
    private readonly metrics: Metrics,
    private readonly log: FastifyBaseLogger,
    private readonly maxFailures: number,
  ) {
    metrics.counter('fleet_login_failures_total', 'Failed logins (known and unknown user names).');
  }

  note(failure: LoginFailure): void {
    this.metrics.inc('fleet_login_failures_total');
    if (failure.accountId === null) return;
    let p = this.#pending.get(failure.accountId);
    if (!p) {
      p = { count: 0, first: failure.at, last: failure.at, usernames: new Set(), clients: new Set(), locked: 0 };
      this.#pending.set(failure.accountId, p);
    }
    p.count++;
    p.last = failure.at;
    if (p.usernames.size < MAX_LISTED) p.usernames.add(failure.username);
    if (p.clients.size < MAX_LISTED) p.clients.add(failure.client);
    if (failure.failures === this.maxFailures) p.locked++;
  }

  /** Writes one summary record per account with failures since the last flush. */
  flush(): void {
    const pending = [...this.#pending];
    this.#pending.clear();
    for (const [accountId, p] of pending) {
      try {
        this.audit.record(accountId, {
          at: p.last,
          actor: { type: 'system' },
          action: 'POST /api/auth/login',
          resourceKind: 'login',
          resourceUuid: null,
          status: 401,
          request: null,
          before: null,
          after: {
            failures: p.count,
            lockouts: p.locked,
            from: new Date(p.first).toISOString(),
            to: new Date(p.last).toISOString(),
            usernames: [...p.usernames],
            clients: [...p.clients],
          },
        });
      } catch (err) {
        this.log.error({ err, accountId }, 'failed-login summary not written');
      }
    }
  }
}
