import type { Message } from '@router-fleet/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalNoticeBus } from '../src/channel/notices.js';
import { TestClock } from '../src/clock.js';
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
});
