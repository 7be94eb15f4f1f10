import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { AppError, isAppError } from '../errors.js';
import type { LicensingService } from '../licensing/service.js';
import type { PacketService } from '../packets/service.js';
import type { Store } from '../store/database.js';
import type { DeviceRow } from '../store/devices.js';
import { isConflictOn } from '../store/errors.js';
import { packetById, type PacketRow } from '../store/packets.js';
import { AccountScope } from '../store/scope.js';
import {
  AccountTemplateStore,
  type TemplateFields,
  TemplateJobStore,
  type TemplateJobRow,
  type TemplateRow,
  type UnrenderedDevice,
} from '../store/templates.js';
import { placeholders, type RenderContext, render } from './render.js';

/** What a template job has for one device when the dispatcher wants to claim it. */
export type TemplatePacket =
  | { readonly kind: 'none' }
  | { readonly kind: 'pending' }
  | { readonly kind: 'packet'; readonly packet: PacketRow }
  | { readonly kind: 'error'; readonly code: string; readonly message: string };

/** The job dispatcher's view of configuration templates (jobs/service.ts calls only this). */
export interface JobTemplateHook {
  /** Inside the job-creation transaction: the template (plan gate, ownership, placeholders checked). */
  lookup(scope: AccountScope, templateUuid: string): TemplateRow;
  /** Inside the same transaction, after the job row exists: snapshots the template for the job. */
  attach(jobId: number, template: TemplateRow): void;
  /** Whether job `jobId` renders a packet per device (asked once per job and claim, not per device). */
  renders(jobId: number): boolean;
  /** Synchronous, inside the claim transaction. */
  packetFor(jobId: number, deviceId: number): TemplatePacket;
  /** A failed render is forgotten once its execution failed, so a retry renders again. */
  forget(jobId: number, deviceId: number): void;
  /** Renders (asynchronously) what devices ready in this process will be claimed for; calls `ready` after. */
  renderAhead(ready: () => void): void;
}

/** Renders at most this many devices per preparation round (the next round follows at once). */
const RENDER_BATCH = 200;

/**
 * Configuration templates (Basic and Pro): a configuration (text) with placeholders filled per
 * device from its fields, its custom fields and its group's template values. A job from a template
 * gives every device its own rendered packet, signed with the server's signing key, built just
 * before the device's execution is claimed; a missing value fails that device's execution
 * (SERVER_TEMPLATE_VALUE_MISSING, naming the field) before anything is sent to it.
 */
export class TemplateService implements JobTemplateHook {
  #preparing = false;
  #again = false;
  readonly #jobs: TemplateJobStore;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly licensing: LicensingService,
    private readonly packets: PacketService,
  ) {
    this.#jobs = new TemplateJobStore(store);
  }

  repo(scope: AccountScope): AccountTemplateStore {
    return new AccountTemplateStore(this.store, scope.accountId);
  }

  // ── CRUD ─────────────────────────────────────────────────────────────────────────────────

  create(scope: AccountScope, t: TemplateFields): TemplateRow {
    placeholders(t.body);
    const uuid = randomUUID();
    unique(() => scope.write(() => this.repo(scope).insert(uuid, t, this.clock.now())));
    return this.repo(scope).byUuid(uuid)!;
  }

  update(scope: AccountScope, uuid: string, patch: Partial<TemplateFields>): TemplateRow {
    const repo = this.repo(scope);
    unique(() =>
      scope.write(() => {
        const cur = repo.byUuid(uuid);
        if (!cur) throw new AppError('SERVER_NOT_FOUND');
        const next: TemplateFields = {
          name: patch.name ?? cur.name,
          kind: patch.kind ?? cur.kind,
          fileName: patch.fileName ?? cur.file_name,
          description: patch.description ?? cur.description,
          body: patch.body ?? cur.body,
        };
        placeholders(next.body);
        repo.update(cur.id, next, this.clock.now());
      }),
    );
    return repo.byUuid(uuid)!;
  }

  delete(scope: AccountScope, uuid: string): void {
    const repo = this.repo(scope);
    scope.write(() => {
      const cur = repo.byUuid(uuid);
      if (!cur) throw new AppError('SERVER_NOT_FOUND');
      // Running template jobs keep their own snapshot of the template.
      repo.delete(cur.id);
    });
  }

  setGroupValues(scope: AccountScope, groupUuid: string, values: Record<string, string>): Record<string, string> {
    const repo = this.repo(scope);
    return scope.write(() => {
      const g = scope.groups.byUuid(groupUuid);
      if (!g) throw new AppError('SERVER_NOT_FOUND');
      repo.setGroupValues(g.id, values, this.clock.now());
      return repo.groupValues(g.id);
    });
  }

  groupValues(scope: AccountScope, groupUuid: string): Record<string, string> {
    const g = scope.groups.byUuid(groupUuid);
    if (!g) throw new AppError('SERVER_NOT_FOUND');
    return this.repo(scope).groupValues(g.id);
  }

  // ── rendering ────────────────────────────────────────────────────────────────────────────

  /** The values a device offers to templates. */
  contextOf(scope: AccountScope, device: DeviceRow): RenderContext {
    const groupName = device.group_id === null ? undefined : this.repo(scope).groupName(device.group_id);
    return {
      device: {
        uuid: device.uuid,
        serialNumber: device.serial_number,
        name: device.name,
        location: device.location,
        model: device.model,
        firmware: device.firmware,
        latitude: device.latitude ?? null,
        longitude: device.longitude ?? null,
        groupName: groupName ?? null,
      },
      custom: JSON.parse(device.custom_fields) as Record<string, string>,
      group: device.group_id === null ? {} : this.repo(scope).groupValues(device.group_id),
    };
  }

  preview(scope: AccountScope, templateUuid: string, deviceUuid: string) {
    const t = this.repo(scope).byUuid(templateUuid);
    const device = scope.devices.byUuid(deviceUuid);
    if (!t || !device) throw new AppError('SERVER_NOT_FOUND');
    return {
      templateUuid: t.uuid,
      deviceUuid: device.uuid,
      fileName: t.file_name,
      kind: t.kind,
      placeholders: placeholders(t.body).map((p) => p.path),
      rendered: render(t.body, this.contextOf(scope, device)),
    };
  }

  // ── the job hook ─────────────────────────────────────────────────────────────────────────

  lookup(scope: AccountScope, templateUuid: string): TemplateRow {
    this.licensing.requireFeature(scope, 'configurationTemplates');
    const t = this.repo(scope).byUuid(templateUuid);
    if (!t) throw new AppError('SERVER_VALIDATION', `Unknown configuration template ${templateUuid}.`);
    placeholders(t.body);
    return t;
  }

  attach(jobId: number, t: TemplateRow): void {
    this.#jobs.attach(jobId, t);
  }

  /** The template a job renders (null for other jobs). */
  jobTemplate(jobId: number): TemplateJobRow | undefined {
    return this.#jobs.byJob(jobId);
  }

  renders(jobId: number): boolean {
    return this.jobTemplate(jobId) !== undefined;
  }

  packetFor(jobId: number, deviceId: number): TemplatePacket {
    if (!this.jobTemplate(jobId)) return { kind: 'none' };
    const r = this.#jobs.render(jobId, deviceId);
    if (!r) return { kind: 'pending' };
    if (r.error_code !== null) return { kind: 'error', code: r.error_code, message: r.error_message ?? '' };
    const packet = r.packet_id === null ? undefined : packetById(this.store, r.packet_id);
    // The rendered packet was deleted meanwhile: render again.
    if (!packet) {
      this.forget(jobId, deviceId);
      return { kind: 'pending' };
    }
    return { kind: 'packet', packet };
  }

  forget(jobId: number, deviceId: number): void {
    this.#jobs.forgetRender(jobId, deviceId);
  }

  renderAhead(ready: () => void): void {
    if (this.#preparing) {
      this.#again = true;
      return;
    }
    const work = this.#work();
    if (work.length === 0) return;
    this.#preparing = true;
    void this.#renderAll(work)
      .catch(() => undefined)
      .finally(() => {
        this.#preparing = false;
        const again = this.#again;
        this.#again = false;
        ready();
        if (again) this.renderAhead(ready);
      });
  }

  /** Pending devices of running template jobs that are ready in this process and not rendered yet. */
  #work(): UnrenderedDevice[] {
    // Every dispatch asks (after every batch of hellos and progress reports): the join over pending
    // devices is read only while a template job runs.
    if (!this.#jobs.anyRunning()) return [];
    return this.#jobs.unrendered(this.clock.now(), RENDER_BATCH);
  }

  async #renderAll(work: UnrenderedDevice[]): Promise<void> {
    for (const w of work) {
      const tj = this.jobTemplate(w.job_id);
      const scope = new AccountScope(this.store, w.account_id);
      const deviceUuid = this.repo(scope).deviceUuid(w.device_id);
      const row = deviceUuid === undefined ? undefined : scope.devices.byUuid(deviceUuid);
      let packetId: number | null = null;
      let error: { code: string; message: string } | null = null;
      try {
        if (!tj || !row) throw new AppError('SERVER_NOT_FOUND', 'The job or the device no longer exists.');
        const text = render(tj.body, this.contextOf(scope, row));
        const packet = await this.packets.build(scope, {
          name: `${tj.name} · ${row.serial_number}`.slice(0, 200),
          description: `Template ${tj.name} rendered for ${row.serial_number}`.slice(0, 256),
          components: [{ kind: tj.kind, fileName: tj.file_name, text }],
        });
        packetId = packet.id;
      } catch (err) {
        error = isAppError(err)
          ? { code: err.code, message: err.message }
          : { code: 'SERVER_INTERNAL', message: 'Rendering the template failed.' };
      }
      this.#jobs.recordRender(w.job_id, w.device_id, { packetId, error }, this.clock.now());
    }
  }
}

function unique<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (isConflictOn(err, 'name')) throw new AppError('SERVER_NAME_TAKEN');
    throw err;
  }
}
