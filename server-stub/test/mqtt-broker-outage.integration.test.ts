import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { SECOND } from '../src/clock.js';
import { currentHold, heldLeaseCount } from '../src/store/seat-hold.js';
import { admissionCounts } from '../src/store/leases.js';
import type { DeviceIdentity } from './helpers/fake-device.js';
import { MOSQUITTO_MISSING } from './helpers/mosquitto.js';
import { MqttDevice } from './helpers/mqtt-device.js';
import { type MqttWorld, mqttWorld } from './helpers/mqtt-world.js';
import { removeTempDirs } from './helpers/setup.js';

let worlds: MqttWorld[] = [];
let devices: MqttDevice[] = [];
afterEach(async () => {
  for (const d of devices) await d.end().catch(() => undefined);
  devices = [];
  for (const w of worlds) await w.stop().catch(() => undefined);
  worlds = [];
  removeTempDirs();
});

/**
 * Two seats, two managed routers and one waiting for a seat; a grace period of 1 s (the server's
 * clock is a test clock: the test moves it past the grace while the devices are away) and a quiet
 * period of 60 s.
 */
interface Fleet {
  m: MqttWorld;
  a: DeviceIdentity;
  b: DeviceIdentity;
  waiting: DeviceIdentity;
  connect(id: DeviceIdentity): Promise<MqttDevice>;
}

async function fleet(): Promise<Fleet> {
  const m = await mqttWorld('mosquitto', {
    licences: 2,
    devices: 3,
    flags: { leaseGraceSec: 1, restartQuietSec: 60, restartHoldMaxSec: 1800, sweepIntervalSec: 1, admissionRetryAfterSec: 1 },
  });
  worlds.push(m);
  const connect = async (id: DeviceIdentity) => {
    const d = new MqttDevice(id);
    devices.push(d);
    await d.connect(m.url, { protocolVersion: m.protocolVersion });
    return d;
  };
  const [a, b, waiting] = m.ids as [DeviceIdentity, DeviceIdentity, DeviceIdentity];
  // The server's own start hold (nothing held) is over before the fleet connects.
  await waitFor(() => !m.w.services.admission.holding, { what: 'the start hold over' });
  return { m, a, b, waiting, connect };
}

/** A hello from the waiting router, on a connection of its own: it must be refused for want of a seat. */
async function stillWaiting(connect: (id: DeviceIdentity) => Promise<MqttDevice>, id: DeviceIdentity): Promise<void> {
  const d = await connect(id);
  const welcome = await d.admit();
  expect(welcome.body).toMatchObject({ admission: 'rejected', reason: 'LICENCE_UNAVAILABLE' });
  await d.end();
}

describe.skipIf(MOSQUITTO_MISSING)(`seats across a restart of the MQTT broker (real Mosquitto)${MOSQUITTO_MISSING ? `: ${MOSQUITTO_MISSING}` : ''}`, () => {
  // A restart (SIGTERM) publishes every device's will before the broker closes the server's bucket
  // clients; a crash (SIGKILL) publishes none: the bucket clients' loss ends the links.
  it.each(['restart', 'crash'] as const)('a broker %s: the routers lost with it keep their seats past the grace while they come back; the waiting one stays refused', async (how) => {
    const { m, a, b, waiting, connect } = await fleet();
    const store = m.w.services.store;
    for (const id of [a, b]) expect((await (await connect(id)).admit()).body.admission).toBe('managed');
    await stillWaiting(connect, waiting);

    if (how === 'crash') await m.broker!.kill();
    await m.broker!.restart();
    // The server's bucket clients lost the broker: both seats held by a seat hold, not in grace.
    await waitFor(() => heldLeaseCount(store) === 2, { what: 'both seats held' });
    expect(currentHold(store)).toMatchObject({ heldAtStart: 2, endedAt: null });
    // The bucket clients have the broker back: the quiet period counts from here.
    await waitFor(() => currentHold(store)?.servingSince != null, { what: 'the broker back for the server', timeout: 30_000 });

    // The managed routers stay away for longer than the grace period; the waiting one keeps asking.
    m.w.advance(5 * SECOND);
    await stillWaiting(connect, waiting);
    m.w.advance(5 * SECOND);
    await stillWaiting(connect, waiting);

    const a2 = await connect(a);
    expect((await a2.admit()).body.admission).toBe('managed');
    expect(currentHold(store)).toMatchObject({ endedAt: null });
    m.w.advance(5 * SECOND);
    await stillWaiting(connect, waiting);
    const b2 = await connect(b);
    expect((await b2.admit()).body.admission).toBe('managed');
    // Every held router back: the hold ends at its next check (every second).
    await waitFor(() => currentHold(store)?.endReason === 'all-returned', { what: 'the hold ended, all returned' });
    expect(heldLeaseCount(store)).toBe(0);
    await stillWaiting(connect, waiting);
    expect(admissionCounts(store).managed).toBe(2);
  }, 90_000);

  it('a router that never comes back loses its seat to the waiting one once the hold has ended (quiet) and its grace passed', async () => {
    const { m, a, b, waiting, connect } = await fleet();
    const store = m.w.services.store;
    for (const id of [a, b]) expect((await (await connect(id)).admit()).body.admission).toBe('managed');

    await m.broker!.restart();
    await waitFor(() => heldLeaseCount(store) === 2, { what: 'both seats held' });
    await waitFor(() => currentHold(store)?.servingSince != null, { what: 'the broker back for the server', timeout: 30_000 });
    m.w.advance(5 * SECOND);
    await stillWaiting(connect, waiting);
    expect((await (await connect(a)).admit()).body.admission).toBe('managed');

    // b never returns. 60 s without a return after the broker is back: caught up (quiet).
    m.w.advance(59 * SECOND);
    await stillWaiting(connect, waiting);
    expect(currentHold(store)).toMatchObject({ endedAt: null });
    m.w.advance(1 * SECOND);
    await waitFor(() => currentHold(store)?.endReason === 'quiet', { what: 'the hold ended, quiet' });
    // Its grace (1 s) starts at the catch-up; then the seat is free and the waiting router gets it.
    m.w.advance(1 * SECOND);
    const d = await connect(waiting);
    expect((await d.admit()).body.admission).toBe('managed');
    expect(admissionCounts(store).managed).toBe(2);
  }, 90_000);
});
