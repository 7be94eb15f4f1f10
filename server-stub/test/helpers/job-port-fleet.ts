// Used by tests and by benches alike: no test framework here.
import type { Message, MessageOf } from '@router-fleet/protocol';
import type { JobOptionsInput } from '../../src/jobs/options.js';
import type { Services } from '../../src/services.js';
import type { ProfileRow } from '../../src/store/devices.js';
import type { JobHead } from '../../src/store/jobs.js';
import type { AccountScope } from '../../src/store/scope.js';

/** One turn of the event loop: the dispatcher's inbox flushes on the next one. */
export const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Until the dispatcher has applied every input it received (its batches are paced by their cost, on timers). */
export async function applied(services: Services): Promise<void> {
  await turn();
  for (let i = 0; i < 10_000 && services.jobs.pendingInputs > 0; i++) await new Promise<void>((resolve) => setTimeout(resolve, 1));
  if (services.jobs.pendingInputs > 0) throw new Error(`the dispatcher still holds ${services.jobs.pendingInputs} inputs`);
}

/** `n` admitted devices of one account, ready on a job port that stands for the channel, and one firmware job offered to all. */
export interface JobPortFleet {
  scope: AccountScope;
  accountId: number;
  /** The devices in registration order. */
  rows: ProfileRow[];
  job: JobHead;
  /** Every message the dispatcher sent, in order. */
  sent: Array<{ deviceUuid: string; message: Message }>;
  /** Each device's execution id, from the last offer it was sent. */
  executions: Map<string, string>;
  /** Devices the port cannot reach now (gone without a word): sending to them fails and nothing is recorded in `sent`. */
  unreachable: Set<string>;
  /** The device says it is ready (connected and admitted), as the channel tells the dispatcher. */
  ready(deviceUuid: string): void;
  /** The device's job-progress, as the channel hands it over. */
  progress(deviceUuid: string, message: MessageOf<'job-progress'>): void;
}

/**
 * Sets up a `JobPortFleet` on `services` (a fresh store): one account named `name` with enough
 * Basic-25 licences, `n` devices `${name}-0…` registered (numbered to sort as registered) from a CSV and admitted, attached to the
 * dispatcher by a port that records what is sent, all ready, and a firmware job with `options`
 * targeting all of them; returns once every device has its offer.
 */
export async function jobPortFleet(services: Services, name: string, n: number, options: JobOptionsInput = {}): Promise<JobPortFleet> {
  const now = services.clock.now();
  const { accountId, accountUuid } = await services.auth.createAccount({ name, username: name.toLowerCase(), password: 'correct horse battery' });
  const scope = services.auth.scope(accountId);
  for (const code of services.licensing.issue('basic-25', Math.ceil(n / 25), now)) {
    services.licensing.activate(scope, services.licensing.redeem(scope, code, now).uuid, undefined, now);
  }
  const serials = Array.from({ length: n }, (_, i) => `${name}-${String(i).padStart(String(n - 1).length, '0')}`);
  services.devices.importCsv(scope, ['serialNumber', ...serials].join('\n'), false, n);
  const rows = scope.devices.profileRows({ afterId: 0, limit: n });
  services.admission.admitMany(rows.map((r) => ({ deviceUuid: r.uuid, credential: services.devices.credential(scope, r.uuid) })));

  const sent: JobPortFleet['sent'] = [];
  const executions = new Map<string, string>();
  const unreachable = new Set<string>();
  let ready: ((deviceUuid: string, accountUuid: string) => void) | undefined;
  let progress: JobPortFleet['progress'] | undefined;
  services.jobs.attach({
    send: (deviceUuid, message) => {
      if (unreachable.has(deviceUuid)) return false;
      sent.push({ deviceUuid, message });
      if (message.type === 'job-offer') executions.set(deviceUuid, message.body.executionId);
      return true;
    },
    onDeviceReady: (listener) => (ready = listener),
    onJobProgress: (listener) => (progress = listener),
  });
  for (const r of rows) ready!(r.uuid, accountUuid);
  await applied(services);
  const packet = await services.packets.build(scope, {
    name: `${name} firmware`,
    components: [{ kind: 'firmware', fileName: 'firmware-9.0.0.bin', data: Buffer.alloc(1024, 1).toString('base64'), version: '9.0.0' }],
  } as never);
  const job = services.jobs.create(scope, { name: `${name} job`, packetUuid: packet.uuid, target: { all: true }, options }, null);
  for (let i = 0; i < 1000 && executions.size < n; i++) await applied(services);
  if (executions.size < n) throw new Error(`only ${executions.size} of ${n} offers went out`);
  return {
    scope,
    accountId,
    rows,
    job,
    sent,
    executions,
    unreachable,
    ready: (deviceUuid) => ready!(deviceUuid, accountUuid),
    progress: (deviceUuid, message) => progress!(deviceUuid, message),
  };
}
