import { describe, expect, it } from 'vitest';
import { startBrokerFleet } from '../src/brokers.js';

describe('broker fleet options', () => {
  it('a queue cap with bridged brokers is refused with LOADTEST_USAGE before any broker starts', async () => {
    await expect(
      startBrokerFleet({ devices: [{ deviceId: 'd-1', credential: 'c' }], hub: true, maxQueuedMessages: 10 }),
    ).rejects.toMatchObject({ code: 'LOADTEST_USAGE' });
  });
});
