import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { SECOND } from '../src/clock.js';
import { currentHold, heldLeaseCount } from '../src/store/seat-hold.js';
import { admissionCounts } from '../src/store/leases.js';
import { ensureServerBuilt } from './helpers/built.js';
import { killServes, LOG_DEADLINE_MS, seedFleet, serve } from './helpers/cluster.js';
import type { DeviceIdentity } from './helpers/fake-device.js';
import { MOSQUITTO_MISSING, mosquittoTestParts, startMosquitto } from './helpers/mosquitto.js';
import { MqttDevice } from './helpers/mqtt-device.js';
import { dynsecAccounts, type MqttWorld, mqttWorld, SERVER_PASSWORD } from './helpers/mqtt-world.js';
import { parsePrometheusText, sampleValue } from './helpers/prometheus-text.js';

const { worlds, devices, brokers } = mosquittoTestParts(killServes);

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

describe.skipIf(MOSQUITTO_MISSING)(`seats across a restart of the MQTT broker, serve --workers 2 (real CLI, node:cluster)${MOSQUITTO_MISSING ? `: ${MOSQUITTO_MISSING}` : ''}`, () => {
  it('the workers hold the seats of the routers they lost with the broker; the primary ends the hold once they are back', async () => {
    ensureServerBuilt();
    const { dataDir, ids } = await seedFleet({ licences: 2, devices: 3 });
    const [a, b, waiting] = ids as [DeviceIdentity, DeviceIdentity, DeviceIdentity];
    const broker = await startMosquitto({ dynsec: { admin: { username: 'admin', password: 'admin-secret' }, ...dynsecAccounts(ids) } });
    brokers.push(broker);
    const server = serve(dataDir, [
      '--workers', '2', '--mqttUrl', broker.url, '--mqttPassword', SERVER_PASSWORD, '--presenceFlushMs', '100',
      '--leaseGraceSec', '1', '--restartQuietSec', '600', '--sweepIntervalSec', '1', '--admissionRetryAfterSec', '1',
    ]);
    const lines = server.logs.lines;
    const log = (what: string, pred: () => boolean) =>
      waitFor(pred, { timeout: LOG_DEADLINE_MS, interval: 50, what: () => `${what}; last lines ${JSON.stringify(lines.slice(-5))}` });
    const caughtUp = () => lines.filter((l) => l['msg'] === 'seat hold: caught up with the reconnecting fleet; grace starts for devices not back');
    await log('both workers consuming', () => lines.filter((l) => l['msg'] === 'MQTT control channel consuming').length === 2);
    // The start hold (nothing held) ends once every worker listens.
    await log('the start hold over', () => caughtUp().length === 1);

    const connect = async (id: DeviceIdentity) => {
      const d = new MqttDevice(id);
      devices.push(d);
      await d.connect(broker.url, { protocolVersion: 5 });
      return d;
    };
    const stillWaiting = async () => {
      const d = await connect(waiting);
      expect((await d.admit()).body).toMatchObject({ admission: 'rejected', reason: 'LICENCE_UNAVAILABLE' });
      await d.end();
    };
    for (const id of [a, b]) expect((await (await connect(id)).admit()).body.admission).toBe('managed');
    await stillWaiting();

    const url = (await server.logs.waitFor((l) => l['msg'] === 'fleet-server listening')).url as string;
    const sweeps = async () =>
      sampleValue(parsePrometheusText(await (await request(`${url}/metrics`, { signal: AbortSignal.timeout(3000) })).body.text()), 'fleet_licence_sweeps_total') ?? 0;

    await broker.restart();
    // The workers (whichever consume the two routers' buckets) hold both seats.
    const heldLines = () => lines.filter((l) => l['msg'] === 'seat hold: managed devices lost with the MQTT broker keep their seats until the fleet is back');
    await log('both seats held by the workers', () => heldLines().reduce((n, l) => n + (l['held'] as number), 0) === 2);
    const lostAt = Date.now();
    await log('the broker back for both workers', () => lines.filter((l) => l['msg'] === 'MQTT: the broker is back; every bucket client subscribed').length === 2);
    // Past the grace (1 s), two more licence sweeps have run: a seat in its grace would have moved.
    await waitFor(() => Date.now() > lostAt + 1_000, { what: 'the grace past' });
    const before = await sweeps();
    await waitFor(async () => (await sweeps()) >= before + 2, { timeout: LOG_DEADLINE_MS, interval: 200, what: 'two licence sweeps past the grace' });
    await stillWaiting();
    expect((await (await connect(a)).admit()).body.admission).toBe('managed');
    await stillWaiting();
    expect((await (await connect(b)).admit()).body.admission).toBe('managed');
    await log('the hold over', () => caughtUp().length === 2);
    expect(caughtUp()[1]).toMatchObject({ reason: 'all-returned', notReturned: 0 });
    await stillWaiting();
    await server.stop();
  }, 180_000);
});
