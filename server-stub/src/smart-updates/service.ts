import { isNewerVersion, parseVersion, satisfiesRange } from '@router-fleet/protocol';
import type { AuditService } from '../audit/service.js';
import type { Clock } from '../clock.js';
import { isAppError } from '../errors.js';
import type { JobOptionsInput } from '../jobs/options.js';
import type { JobService } from '../jobs/service.js';
import type { LicensingService } from '../licensing/service.js';
import type { PacketService, StoredManifest } from '../packets/service.js';
import { Accounts } from '../store/accounts.js';
import type { Store } from '../store/database.js';
import { JobDevices } from '../store/job-devices.js';
import type { PacketRow } from '../store/packets.js';
import { AccountSmartUpdates, accountsWithSmartUpdates } from '../store/smart-updates.js';
import { AccountScope } from '../store/scope.js';

/**
 * Rollout limits of Smart Update jobs: the same machinery (and limits) as any job, with
 * conservative defaults because nobody watches a system job start.
 */
export const SMART_UPDATE_OPTIONS: JobOptionsInput = {
  rollout: { maxConcurrent: 20, maxPerMinute: 60 },
  abort: { failurePercent: 20, minFailures: 3 },
  retries: { max: 1, delaySec: 600 },
};

/** A router that did not take a Smart Update is offered it again after this long even if nothing changed, ms. */
export const SMART_UPDATE_RETRY_MS = 24 * 3_600_000;

/**
 * What decides whether offering the update again can end differently: the model and firmware the
 * router runs and the trust anchors it holds (a router without the vendor root refuses the packet
 * until it gets the root).
 */
/**
 * What a router reported, as one text compared for equality. Fields are separated by U+001F (unit
 * separator): PostgreSQL's text cannot hold the U+0000 used before, which `retryDue` still reads.
 */
function deviceState(d: { model: string; firmware: string; anchors: string | null }): string {
  return `${d.model}\u001f${d.firmware}\u001f${d.anchors ?? ''}`;
}

/** A router still outdated after an attempt is retried when it changed since, or after SMART_UPDATE_RETRY_MS. */
function retryDue(a: { device_state: string | null; attempted_at: number }, state: string, now: number): boolean {
  const recorded = a.device_state?.replaceAll('\u0000', '\u001f') ?? null;
  return (recorded !== null && recorded !== state) || now - a.attempted_at >= SMART_UPDATE_RETRY_MS;
}

/** Period of the Smart Updates check (also run whenever the test clock moves), ms. */
export const SMART_UPDATE_CHECK_MS = 15 * 60_000;

export interface SmartUpdateSetting {
  enabled: boolean;
  changedAt: number | null;
}

export interface SmartUpdateCheck {
  created: { model: string; version: string; jobUuid: string; devices: number }[];
  extended: { model: string; version: string; jobUuid: string; devices: number }[];
}

function settingsOf(store: Store, accountId: number): Record<string, unknown> {
  const row = new Accounts(store).byId(accountId);
  return row ? (JSON.parse(row.settings) as Record<string, unknown>) : {};
}

function requiredSwOf(p: PacketRow): string | undefined {
  const m = JSON.parse(p.manifest) as StoredManifest;
  return m.sections.find((s) => s.fileType === 'FirmwareFull' || s.fileType === 'FirmwareIncremental')?.requiredSw;
}

/**
 * Smart Updates (every plan): while enabled, every device of the account with a known model and a
 * firmware version (protocol's `parseVersion`, the routers' rule) older than the newest catalogue firmware for its model (whose REQUIRED_SW its
 * firmware satisfies) is updated by a system job. Model and firmware are what the router reported,
 * else what was typed in. One system job per (account, model, version): a running one is extended
 * with devices that became outdated later; a finished one is followed by a new job for devices it
 * never targeted and for devices still outdated after it (rejected, failed) once they changed
 * (firmware, model, trust anchors) or SMART_UPDATE_RETRY_MS passed; a cancelled or aborted one is
 * left alone (someone stopped it, or it failed too often).
 */
export class SmartUpdateService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly licensing: LicensingService,
    private readonly packets: PacketService,
    private readonly jobs: JobService,
    private readonly audit: AuditService,
  ) {}

  setting(scope: AccountScope): SmartUpdateSetting {
    const s = settingsOf(this.store, scope.accountId)['smartUpdates'] as { enabled?: unknown; changedAt?: unknown } | undefined;
    return {
      enabled: s?.enabled === true,
      changedAt: typeof s?.changedAt === 'number' ? s.changedAt : null,
    };
  }

  set(scope: AccountScope, enabled: boolean): SmartUpdateSetting {
    const now = this.clock.now();
    scope.write(() => {
      const s = settingsOf(this.store, scope.accountId);
      scope.updateAccount({ settings: { ...s, smartUpdates: { enabled, changedAt: now } } });
    });
    if (enabled) this.checkAccount(scope.accountId);
    return this.setting(scope);
  }

  /** Periodic: every account with Smart Updates on. Errors of one account do not stop the others. */
  checkAll(): void {
    for (const id of accountsWithSmartUpdates(this.store)) {
      try {
        this.checkAccount(id);
      } catch {
        // e.g. no active plan: the next check tries again
      }
    }
  }

  /** The newest catalogue firmware for `model` that a device running `firmware` may install. */
  target(model: string, firmware: string): PacketRow | undefined {
    let best: PacketRow | undefined;
    for (const row of this.packets.catalogue.list({ model, afterId: 0, limit: 10_000 })) {
      if (!row.version || !isNewerVersion(row.version, firmware)) continue;
      const required = requiredSwOf(row);
      if (required !== undefined && !satisfiesRange(firmware, required)) continue;
      if (!best || isNewerVersion(row.version, best.version!)) best = row;
    }
    return best;
  }

  checkAccount(accountId: number): SmartUpdateCheck {
    const result: SmartUpdateCheck = { created: [], extended: [] };
    const scope = new AccountScope(this.store, accountId);
    if (!this.setting(scope).enabled) return result;
    if (this.licensing.entitlement(scope).plan === null) return result;
    const now = this.clock.now();
    // The model and firmware the router reported (hello, status); the typed-in ones until it has.
    const smart = new AccountSmartUpdates(this.store, accountId);
    const jobDevices = new JobDevices(this.store);
    const devices = smart.candidates();
    // (model, version) → outdated devices that should get it
    const wanted = new Map<string, { model: string; version: string; devices: typeof devices }>();
    const targets = new Map<string, PacketRow | undefined>();
    for (const d of devices) {
      const fw = parseVersion(d.firmware) ? d.firmware : undefined;
      if (!fw) continue; // unknown firmware: cannot tell whether it is outdated
      const key = `${d.model}\u0000${fw}`;
      if (!targets.has(key)) targets.set(key, this.target(d.model, fw));
      const t = targets.get(key);
      if (!t) continue;
      const k = `${d.model}\u0000${t.version!}`;
      let w = wanted.get(k);
      if (!w) wanted.set(k, (w = { model: d.model, version: t.version!, devices: [] }));
      w.devices.push(d);
    }
    for (const w of wanted.values()) {
      // Reserve (account, model, version) in one write: several processes never both create the job.
      const plan = this.store.write(() => {
        const row = smart.reservation(w.model, w.version);
        if (row?.job_id === null) return { action: 'none' as const }; // being created by another process
        if (row && row.state !== 'running' && row.state !== 'paused' && row.state !== 'finished') {
          return { action: 'none' as const }; // cancelled or aborted: left alone
        }
        const inJob = new Set(row ? jobDevices.deviceIds(row.job_id!) : []);
        const running = row?.state === 'running' || row?.state === 'paused';
        const eligible = w.devices.filter((d) => {
          if (running && inJob.has(d.id)) return false; // in progress, or waiting for the job's own retries
          const a = smart.attempt(w.model, w.version, d.id);
          return a === undefined || retryDue(a, deviceState(d), now);
        });
        if (eligible.length === 0) return { action: 'none' as const };
        for (const d of eligible) smart.recordAttempt(w.model, w.version, d.id, deviceState(d), now);
        if (!row) {
          smart.reserve(w.model, w.version, now);
          return { action: 'create' as const, devices: eligible };
        }
        if (running) {
          for (const d of eligible) jobDevices.addDevice(row.job_id!, d.id, now);
          return { action: 'extended' as const, jobUuid: row.uuid!, devices: eligible };
        }
        // Finished: a new job for devices it never had and for those it failed that are due a retry.
        smart.setJob(w.model, w.version, null);
        return { action: 'create' as const, devices: eligible };
      });
      if (plan.action === 'extended') {
        result.extended.push({ model: w.model, version: w.version, jobUuid: plan.jobUuid, devices: plan.devices.length });
        this.audit.recordSystem(accountId, 'SMART-UPDATE extend job', {
          resourceKind: 'job',
          resourceUuid: plan.jobUuid,
          after: { model: w.model, version: w.version, addedDevices: plan.devices.map((d) => d.uuid) },
        });
        this.jobs.dispatch();
        continue;
      }
      if (plan.action !== 'create') continue;
      try {
        const job = this.jobs.create(
          scope,
          {
            name: `Smart Update ${w.model} → ${w.version}`,
            firmwareVersion: w.version,
            target: { deviceUuids: plan.devices.map((d) => d.uuid) },
            options: SMART_UPDATE_OPTIONS,
          },
          null,
          true,
        );
        smart.setJob(w.model, w.version, job.id);
        result.created.push({ model: w.model, version: w.version, jobUuid: job.uuid, devices: plan.devices.length });
        this.audit.recordSystem(accountId, 'SMART-UPDATE create job', {
          resourceKind: 'job',
          resourceUuid: job.uuid,
          after: { model: w.model, version: w.version, devices: plan.devices.length },
        });
      } catch (err) {
        // Undo the reservation so the next check tries again.
        this.store.write(() => {
          smart.dropReservation(w.model, w.version);
          for (const d of plan.devices) smart.forgetAttempt(w.model, w.version, d.id, now);
        });
        if (!isAppError(err)) throw err;
      }
    }
    return result;
  }
}
