import { randomUUID } from 'node:crypto';
import { createMessage, type Message, type MessageOf } from '@router-fleet/protocol';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { TestClock } from '../src/clock.js';
import { CLAIMS_PER_TRANSACTION, CLAIMS_PER_TRANSACTION_MAX, DISPATCH_SLICE_MS, INBOX_BATCH_MAX } from '../src/jobs/dispatcher.js';
import { createServices, type Services } from '../src/services.js';
import { removeTempDirs, T0, tempDir, testConfig } from './helpers/setup.js';

afterEach(() => removeTempDirs());

/** Services whose logger writes into `lines`, with the dispatcher attached to a port the test drives. */
function dispatcherWorld() {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const services: Services = createServices(testConfig(tempDir()), { clock: new TestClock(T0), logger });
  const sent: Message[] = [];
  let progress: ((deviceUuid: string, message: MessageOf<'job-progress'>) => void) | undefined;
  services.jobs.attach({
    send: (_deviceUuid, message) => {
      sent.push(message);
      return true;
    },
    onDeviceReady: () => {},
    onJobProgress: (listener) => {
      progress = listener;
    },
  });
  const report = (deviceUuid: string, body: MessageOf<'job-progress'>['body']) =>
    progress!(deviceUuid, createMessage('job-progress', body, { sentAt: T0 }));
  return { services, lines, sent, report };
}

/** The inbox flushes in the setImmediate queued by the first push, which runs before this one. */
const afterInboxFlush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('job dispatcher: errors it handles are logged with their context', () => {
  it('a batch the store cannot take is logged and counted, and nothing is acknowledged', async () => {
    const { services, lines, sent, report } = dispatcherWorld();
    services.store.close();
    report('device-1', { executionId: randomUUID(), state: 'succeeded' });
    await afterInboxFlush();
    const line = lines.find((l) => l.msg === 'channel inputs not stored (the devices repeat them)');
    expect(line, JSON.stringify(lines)).toMatchObject({ level: 50, component: 'jobs', inputs: 1 });
    expect((line!.err as { message: string }).message).toMatch(/not open/);
    expect(services.metrics.value('fleet_errors_total', { code: 'SERVER_INTERNAL' })).toBe(1);
    expect(sent).toEqual([]);
  });

  it('an input that fails alone is logged with its device; the rest of the batch is applied', async () => {
    const { services, lines, sent, report } = dispatcherWorld();
    try {
      // A message the channel would never forward (no body): applying it throws inside its savepoint.
      report('device-1', undefined as unknown as MessageOf<'job-progress'>['body']);
      report('device-2', { executionId: randomUUID(), state: 'succeeded' });
      await afterInboxFlush();
      const line = lines.find((l) => l.msg === 'channel input not applied');
      expect(line, JSON.stringify(lines)).toMatchObject({ level: 50, component: 'jobs', deviceUuid: 'device-1', input: 'progress' });
      expect(services.metrics.value('fleet_errors_total', { code: 'SERVER_INTERNAL' })).toBe(1);
      // The second report was judged (an unknown execution), not lost with the first.
      expect(services.jobs.ignored.unknown).toBe(1);
      expect(sent).toEqual([]);
    } finally {
      services.close();
    }
  });
});

describe('job dispatcher: a burst of offers to many devices', () => {
  it('claims more per transaction as a burst goes on, and holds what devices report and new downloads until the offers are out', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const clock = new TestClock(T0);
    const services = createServices(testConfig(tempDir()), { clock, logger });
    try {
      const created = await services.auth.createAccount({ name: 'Burst', username: 'burst', password: 'burst of offers 1' });
      const scope = services.auth.scope(created.accountId);
      const n = 4 * CLAIMS_PER_TRANSACTION + 13;
      for (const code of services.licensing.issue('basic-25', Math.ceil(n / 25), T0)) {
        const l = services.licensing.redeem(scope, code, T0);
        services.licensing.activate(scope, l.uuid, undefined, T0);
      }
      services.devices.importCsv(scope, ['serialNumber', ...Array.from({ length: n }, (_, i) => `BURST-${i}`)].join('\n'), false, n);
      const rows = scope.devices.profileRows({ afterId: 0, limit: n });
      services.admission.admitMany(rows.map((r) => ({ deviceUuid: r.uuid, credential: services.devices.credential(scope, r.uuid) })));

      const sent: Array<{ deviceUuid: string; message: Message }> = [];
      let ready: ((deviceUuid: string, accountUuid: string) => void) | undefined;
      let progress: ((deviceUuid: string, message: MessageOf<'job-progress'>) => void) | undefined;
      let allOffered: () => void = () => undefined;
      const offeredAll = new Promise<void>((resolve) => (allOffered = resolve));
      let acked: () => void = () => undefined;
      const ackSent = new Promise<void>((resolve) => (acked = resolve));
      let offers = 0;
      let heldAtLastOffer: boolean | undefined;
      let unknownAtLastOffer: number | undefined;
      services.jobs.attach({
        send: (deviceUuid, message) => {
          sent.push({ deviceUuid, message });
          if (message.type === 'ack') acked();
          if (message.type !== 'job-offer') return true;
          if (++offers === 1) {
            // The first device finishes at once; and this send outlasts the dispatch slice, so the
            // offers still to go out are sent in later turns: a burst, during which the report waits.
            progress!(deviceUuid, createMessage('job-progress', { executionId: message.body.executionId, state: 'succeeded' }, { sentAt: T0 }));
            const until = performance.now() + DISPATCH_SLICE_MS + 20;
            while (performance.now() < until) { /* a slow socket write */ }
          }
          if (offers === CLAIMS_PER_TRANSACTION + 1) {
            // In the burst's second slice: more reports than one transaction takes, all held.
            for (let i = 0; i < INBOX_BATCH_MAX + 100; i++) {
              progress!(randomUUID(), createMessage('job-progress', { executionId: randomUUID(), state: 'downloading' }, { sentAt: T0 }));
            }
          }
          if (offers === n) {
            // Sent in a later slice of the burst: new downloads of this process wait meanwhile.
            heldAtLastOffer = services.packets.downloads.held;
            unknownAtLastOffer = services.jobs.ignored.unknown;
            allOffered();
          }
          return true;
        },
        onDeviceReady: (listener) => (ready = listener),
        onJobProgress: (listener) => (progress = listener),
      });
      for (const r of rows) ready!(r.uuid, created.accountUuid);
      await new Promise((resolve) => setImmediate(resolve));

      const packet = await services.packets.build(scope, {
        name: 'burst firmware',
        components: [{ kind: 'firmware', fileName: 'firmware-9.0.0.bin', data: Buffer.alloc(1024, 1).toString('base64'), version: '9.0.0' }],
      } as never);
      services.jobs.create(scope, { name: 'burst job', packetUuid: packet.uuid, target: { all: true } }, null);
      await offeredAll;
      await ackSent;

      expect(heldAtLastOffer).toBe(true);
      expect(services.packets.downloads.held).toBe(false);
      // The reports of unknown executions were held too, and are all judged after the burst (in
      // transactions of at most INBOX_BATCH_MAX, one per turn).
      expect(unknownAtLastOffer).toBe(0);
      for (let turn = 0; turn < 100 && services.jobs.ignored.unknown < INBOX_BATCH_MAX + 100; turn++) await new Promise((r) => setImmediate(r));
      expect(services.jobs.ignored.unknown).toBe(INBOX_BATCH_MAX + 100);
      const offered = sent.filter((s) => s.message.type === 'job-offer');
      expect(new Set(offered.map((s) => s.deviceUuid)).size).toBe(n);
      // Held while the burst went on: the ack of the report came after the last offer.
      const ackAt = sent.findIndex((s) => s.message.type === 'ack');
      expect(ackAt).toBeGreaterThan(sent.findLastIndex((s) => s.message.type === 'job-offer'));
      expect(sent[ackAt]!.deviceUuid).toBe(offered[0]!.deviceUuid);
      // 500, then 1,000, then up to 2,000 per claim transaction.
      const claims = lines.filter((l) => l.msg === 'executions claimed').map((l) => l.claimed as number);
      expect(claims.slice(0, 2)).toEqual([CLAIMS_PER_TRANSACTION, 2 * CLAIMS_PER_TRANSACTION]);
      expect(Math.max(...claims)).toBeLessThanOrEqual(CLAIMS_PER_TRANSACTION_MAX);
      expect(claims.reduce((a, b) => a + b, 0)).toBe(n);
      // Every offer recorded as offered (none left queued), the one result recorded.
      const states = services.store.stmt<{ state: string; n: number }>('SELECT state, count(*) AS n FROM job_executions GROUP BY state ORDER BY state').all();
      expect(states).toEqual([{ state: 'offered', n: n - 1 }, { state: 'succeeded', n: 1 }]);
    } finally {
      services.close();
    }
  }, 120_000);
});
