import { randomUUID } from 'node:crypto';
import { createMessage, type Message, type MessageOf } from '@router-fleet/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalNoticeBus } from '../src/channel/notices.js';
import { TestClock } from '../src/clock.js';
import { CLAIMS_PER_TRANSACTION, DISPATCH_SLICE_MS } from '../src/jobs/dispatcher.js';
import { createServices } from '../src/services.js';
import { removeTempDirs, T0, tempDir, testConfig } from './helpers/setup.js';

afterEach(() => removeTempDirs());

describe('a new job reaches the devices of every process at once', () => {
  it('a job created in one process is offered by another that holds the devices, without waiting for its tick', async () => {
    // Two processes on one store, as two cluster workers: they share only the store and the notice bus.
    const dir = tempDir();
    const notices = new LocalNoticeBus();
    const clock = new TestClock(T0);
    const api = createServices(testConfig(dir), { clock, notices });
    const holder = createServices(testConfig(dir), { clock, notices });
    try {
      const created = await api.auth.createAccount({ name: 'Two', username: 'two', password: 'two processes 1' });
      const scope = api.auth.scope(created.accountId);
      for (const code of api.licensing.issue('pro', 1, T0)) {
        const l = api.licensing.redeem(scope, code, T0);
        api.licensing.activate(scope, l.uuid, undefined, T0);
      }
      const n = 20;
      api.devices.importCsv(scope, ['serialNumber', ...Array.from({ length: n }, (_, i) => `TWO-${i}`)].join('\n'), false, n);
      const rows = scope.devices.profileRows({ afterId: 0, limit: n });
      api.admission.admitMany(rows.map((r) => ({ deviceUuid: r.uuid, credential: api.devices.credential(scope, r.uuid) })));

      const offered = new Set<string>();
      let allOffered: () => void = () => undefined;
      const done = new Promise<void>((resolve) => (allOffered = resolve));
      let ready: ((deviceUuid: string, accountUuid: string) => void) | undefined;
      holder.jobs.attach({
        send: (deviceUuid: string, message: Message) => {
          if (message.type === 'job-offer') offered.add(deviceUuid);
          if (offered.size === n) allOffered();
          return true;
        },
        onDeviceReady: (listener) => (ready = listener),
        onJobProgress: () => undefined,
      });
      for (const r of rows) ready!(r.uuid, created.accountUuid);
      // The holder's inbox marks them ready in its next turn; no job runs yet, so nothing is sent.
      await new Promise((resolve) => setImmediate(resolve));
      expect(offered.size).toBe(0);

      const packet = await api.packets.build(scope, {
        name: 'two-process firmware',
        components: [{ kind: 'firmware', fileName: 'firmware-9.0.0.bin', data: Buffer.alloc(1024, 1).toString('base64'), version: '9.0.0' }],
      } as never);
      api.jobs.create(scope, { name: 'two-process job', packetUuid: packet.uuid, target: { all: true } }, null);
      // No tick runs in these services (no app, the test clock does not move): only the notice can start the holder's dispatch.
      await done;
      expect([...offered].sort()).toEqual(rows.map((r) => r.uuid).sort());
    } finally {
      holder.close();
      api.close();
    }
  }, 60_000);

  it('while one process offers a burst, another holds what its devices report, and applies it once the burst is over', async () => {
    const dir = tempDir();
    const notices = new LocalNoticeBus();
    const clock = new TestClock(T0);
    const offering = createServices(testConfig(dir), { clock, notices });
    const other = createServices(testConfig(dir), { clock, notices });
    try {
      const created = await offering.auth.createAccount({ name: 'Burst', username: 'burst', password: 'two processes 2' });
      const scope = offering.auth.scope(created.accountId);
      // Three claim transactions (500, 1,000, then the last one): a burst over three turns.
      const n = 3 * CLAIMS_PER_TRANSACTION + 1;
      for (const code of offering.licensing.issue('basic-25', Math.ceil(n / 25), T0)) {
        const l = offering.licensing.redeem(scope, code, T0);
        offering.licensing.activate(scope, l.uuid, undefined, T0);
      }
      offering.devices.importCsv(scope, ['serialNumber', ...Array.from({ length: n }, (_, i) => `BURST-${i}`)].join('\n'), false, n);
      const rows = scope.devices.profileRows({ afterId: 0, limit: n });
      offering.admission.admitMany(rows.map((r) => ({ deviceUuid: r.uuid, credential: offering.devices.credential(scope, r.uuid) })));

      let report: ((deviceUuid: string, message: MessageOf<'job-progress'>) => void) | undefined;
      other.jobs.attach({ send: () => true, onDeviceReady: () => undefined, onJobProgress: (listener) => (report = listener) });
      let offers = 0;
      let heldAtLastOffer: number | undefined;
      let appliedAtLastOffer: number | undefined;
      let allOffered: () => void = () => undefined;
      const offeredAll = new Promise<void>((resolve) => (allOffered = resolve));
      let ready: ((deviceUuid: string, accountUuid: string) => void) | undefined;
      offering.jobs.attach({
        send: (_deviceUuid: string, message: Message) => {
          if (message.type !== 'job-offer') return true;
          offers++;
          if (offers === 1 || offers === CLAIMS_PER_TRANSACTION + 1) {
            // A slow socket write: the slice ends with offers left for the next turn (a burst).
            const until = performance.now() + DISPATCH_SLICE_MS + 20;
            while (performance.now() < until) { /* busy */ }
          }
          // In the second slice, a device of the other process reports (its inbox takes it in a later turn).
          if (offers === CLAIMS_PER_TRANSACTION + 1) {
            report!(randomUUID(), createMessage('job-progress', { executionId: randomUUID(), state: 'downloading' }, { sentAt: T0 }));
          }
          if (offers === n) {
            heldAtLastOffer = other.jobs.heldInputs;
            appliedAtLastOffer = other.jobs.ignored.unknown;
            allOffered();
          }
          return true;
        },
        onDeviceReady: (listener) => (ready = listener),
        onJobProgress: () => undefined,
      });
      for (const r of rows) ready!(r.uuid, created.accountUuid);
      await new Promise((resolve) => setImmediate(resolve));
      const packet = await offering.packets.build(scope, {
        name: 'burst firmware',
        components: [{ kind: 'firmware', fileName: 'firmware-9.0.0.bin', data: Buffer.alloc(1024, 1).toString('base64'), version: '9.0.0' }],
      } as never);
      offering.jobs.create(scope, { name: 'burst job', packetUuid: packet.uuid, target: { all: true } }, null);
      await offeredAll;
      // Held in the other process while the offers went on there.
      expect(heldAtLastOffer).toBe(1);
      expect(appliedAtLastOffer).toBe(0);
      // Applied once the burst ended (the report is of an unknown execution: judged and counted).
      for (let turn = 0; turn < 1000 && other.jobs.ignored.unknown === 0; turn++) await new Promise((r) => setTimeout(r, 5));
      expect(other.jobs.ignored.unknown).toBe(1);
      expect(other.jobs.heldInputs).toBe(0);
    } finally {
      other.close();
      offering.close();
    }
  }, 60_000);
});
