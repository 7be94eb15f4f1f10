import { mqttBucket } from '@router-fleet/protocol';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { ensureServerBuilt } from './helpers/built.js';
import { killServes, LOG_DEADLINE_MS, login, seedFleet, serve } from './helpers/cluster.js';
import { MqttDevice } from './helpers/mqtt-device.js';
import { removeTempDirs } from './helpers/setup.js';

const devices: MqttDevice[] = [];
beforeAll(() => ensureServerBuilt(), 180_000);
afterAll(async () => {
  for (const d of devices) await d.end().catch(() => undefined);
  killServes();
  removeTempDirs();
});

describe('serve --workers 2 --mqtt embedded (real CLI, node:cluster)', () => {
  it('the primary runs the broker and gives each worker its buckets; a SIGKILLed worker comes back with the same bucket clients and processes what was published meanwhile', async () => {
    const { dataDir, ids } = await seedFleet({ licences: 4, devices: 12 });
    // One device in an even bucket (worker 0), one in an odd bucket (worker 1).
    const even = ids.find((id) => mqttBucket(id.uuid) % 2 === 0)!;
    const odd = ids.find((id) => mqttBucket(id.uuid) % 2 === 1)!;
    expect(even && odd).toBeTruthy();

    const server = serve(dataDir, ['--workers', '2', '--mqtt', 'embedded', '--mqttPort', '0', '--presenceFlushMs', '100']);
    const logs = server.logs;
    const brokerPort = (await logs.waitFor((l) => l['msg'] === 'embedded MQTT broker listening'))['port'] as number;
    const consuming = () => logs.lines.filter((l) => l['msg'] === 'MQTT control channel consuming');
    await logs.waitFor(() => consuming().length === 2);
    const bucketsOf = new Map(consuming().map((l) => [l['pid'] as number, l['buckets'] as number[]]));
    const [first, second] = [...bucketsOf.values()];
    expect([...first!, ...second!].sort((a, b) => a - b)).toEqual(Array.from({ length: 64 }, (_, b) => b));
    expect(new Set([first!.every((b) => b % 2 === 0), second!.every((b) => b % 2 === 0)])).toEqual(new Set([true, false]));
    const url = `mqtt://127.0.0.1:${brokerPort}`;

    const de = new MqttDevice(even);
    const dodd = new MqttDevice(odd);
    devices.push(de, dodd);
    await de.connect(url);
    await dodd.connect(url);
    expect((await de.admit()).body.admission).toBe('managed');
    expect((await dodd.admit()).body.admission).toBe('managed');

    // Kill the worker that consumes the even device's bucket.
    const victim = [...bucketsOf.entries()].find(([, buckets]) => buckets.includes(mqttBucket(even.uuid)))![0];
    process.kill(victim, 'SIGKILL');
    await logs.waitFor((l) => l['msg'] === 'worker exited; replacing it' && l['workerPid'] === victim);
    // While it is down (or coming back) the device says hello; the broker holds it for the bucket's session.
    const hello = de.hello();
    const helloSentAt = Date.now();
    const welcome = await de.next('welcome', (m) => m.correlationId === hello.id, 60_000);
    expect(welcome.body.admission).toBe('managed');
    // The replacement consumes the same buckets as the worker it replaced.
    const back = await logs.waitFor((l) => l['msg'] === 'MQTT control channel consuming' && !bucketsOf.has(l['pid'] as number));
    expect(back['buckets']).toEqual(bucketsOf.get(victim));
    // It was not consuming yet when the hello was published: the broker kept it for the session.
    expect(back['time'] as number).toBeGreaterThan(helloSentAt);
    // The other worker's device was served throughout.
    await dodd.roundTrip();
    await de.roundTrip();
    await server.stop();
  }, 120_000);

  it('devices are let in once every worker consumes its buckets: a device that connects as early as it can gets its welcome; deleted over the API, its connection ends', async () => {
    const { dataDir, t, ids: [id] } = await seedFleet({ licences: 2, devices: 1 });
    const server = serve(dataDir, ['--workers', '2', '--mqtt', 'embedded', '--mqttPort', '0']);
    const logs = server.logs;
    const brokerPort = (await logs.waitFor((l) => l['msg'] === 'embedded MQTT broker listening'))['port'] as number;
    const url = `mqtt://127.0.0.1:${brokerPort}`;
    // CONNECT from the moment the broker listens; the hello goes out right after the first CONNACK.
    const d = new MqttDevice(id!);
    devices.push(d);
    const refusals: unknown[] = [];
    await waitFor(
      () =>
        d.connect(url).then(
          () => true,
          (err: Error & { code?: unknown }) => {
            refusals.push(err.code);
            return undefined;
          },
        ),
      { timeout: LOG_DEADLINE_MS, interval: 10, what: () => `a CONNACK; refused ${refusals.length} times (${JSON.stringify(refusals.slice(-3))})` },
    );
    const welcome = await d.admit();
    expect(welcome.body.admission).toBe('managed');
    // The device came early: the broker refused it as "server unavailable" while the workers started.
    expect(refusals.length).toBeGreaterThan(0);
    expect(new Set(refusals)).toEqual(new Set([3]));
    await logs.waitFor((l) => l['msg'] === 'embedded broker: every worker consumes its buckets; devices let in');

    // Deleted through whichever worker serves the request: the primary's broker ends the connection.
    const api = (await logs.waitFor((l) => l['msg'] === 'fleet-server listening'))['url'] as string;
    const token = await login(api, t);
    const closed = new Promise<void>((resolve) => d.client.once('close', () => resolve()));
    const del = await request(`${api}/api/inventory/managed-devices/${id!.uuid}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect(del.statusCode).toBe(204);
    await closed;
    await server.stop();
  }, 120_000);
});
