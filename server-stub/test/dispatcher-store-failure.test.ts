import type { Message, MessageOf } from '@router-fleet/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import type { JobChannelPort } from '../src/jobs/channel-port.js';
import { removeTempDirs, world, type World } from './helpers/setup.js';

/*
 * The job dispatcher's inbox is flushed from a timer (setImmediate): a store that fails there must
 * fail that batch (logged, counted, the devices' inputs repeated or re-read later), never throw out
 * of the timer and end the process.
 */

const worlds: World[] = [];
afterAll(() => {
  for (const w of worlds) w.close();
  removeTempDirs();
});

class Port implements JobChannelPort {
  ready: (deviceUuid: string, accountUuid: string) => void = () => {};
  send(_deviceUuid: string, _message: Message): boolean {
    return true;
  }

  onDeviceReady(listener: (deviceUuid: string, accountUuid: string) => void): void {
    this.ready = listener;
  }

  onJobProgress(_listener: (deviceUuid: string, message: MessageOf<'job-progress'>) => void): void {}
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const internalErrors = (w: World) => w.services.metrics.value('fleet_errors_total', { code: 'SERVER_INTERNAL' });

describe('the job dispatcher when the store fails', () => {
  it('a device ready while the store cannot be read fails its batch, counted, and the next batch is handled', async () => {
    const w = world();
    worlds.push(w);
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 1);
    const [d] = w.devices(t, 1);
    const port = new Port();
    w.services.jobs.attach(port);
    const store = w.services.store;
    const read = store.read.bind(store);
    let failures = 1;
    store.read = <T>(fn: () => T): T => {
      if (failures-- > 0) throw new Error('the store is unreachable');
      return read(fn);
    };
    const before = internalErrors(w);
    port.ready(d!.uuid, t.accountUuid);
    await turn();
    await turn();
    expect(internalErrors(w)).toBe(before + 1);
    // The store answers again: the next readiness is handled (no error counted).
    port.ready(d!.uuid, t.accountUuid);
    await turn();
    await turn();
    expect(internalErrors(w)).toBe(before + 1);
  });
});
