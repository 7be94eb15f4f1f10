import { randomUUID } from 'node:crypto';
import { createMessage, type Message, type MessageOf } from '@router-fleet/protocol';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { TestClock } from '../src/clock.js';
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
