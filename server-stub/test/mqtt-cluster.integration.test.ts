import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mqttBucket } from '@router-fleet/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../protocol/test/helpers/wait-for.js';
import { ensureServerBuilt, SERVER_CLI_DIST } from './helpers/built.js';
import { seedSigningPki } from './helpers/channel-world.js';
import { MqttDevice } from './helpers/mqtt-device.js';
import { removeTempDirs, serveStoreArgs, tempDir, world } from './helpers/setup.js';

const LOG_DEADLINE_MS = 60_000;
const children: ChildProcess[] = [];
const devices: MqttDevice[] = [];
beforeAll(() => ensureServerBuilt(), 180_000);
afterAll(async () => {
  for (const d of devices) await d.end().catch(() => undefined);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  removeTempDirs();
});

type Line = Record<string, unknown>;

function follow(child: ChildProcess) {
  const lines: Line[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as Line);
    } catch {
      // not a log line
    }
  });
  return {
    lines,
    waitFor(pred: (l: Line) => boolean, timeoutMs = LOG_DEADLINE_MS) {
      return waitFor(() => lines.find(pred), { timeout: timeoutMs, interval: 50, what: () => `a log line; got ${JSON.stringify(lines.slice(-5))}` });
    },
  };
}

describe('serve --workers 2 --mqtt embedded (real CLI, node:cluster)', () => {
  it('the primary runs the broker and gives each worker its buckets; a SIGKILLed worker comes back with the same bucket clients and processes what was published meanwhile', async () => {
    const dataDir = tempDir();
    await seedSigningPki(dataDir);
    const w = world({}, dataDir);
    w.clock.set(Date.now());
    const t = await w.newTenant();
    w.licences(t, 'basic-1', 4);
    const ids = w.devices(t, 12);
    w.close();
    // One device in an even bucket (worker 0), one in an odd bucket (worker 1).
    const even = ids.find((id) => mqttBucket(id.uuid) % 2 === 0)!;
    const odd = ids.find((id) => mqttBucket(id.uuid) % 2 === 1)!;
    expect(even && odd).toBeTruthy();

    const child = spawn(
      process.execPath,
      [
        SERVER_CLI_DIST, 'serve', ...serveStoreArgs(dataDir), '--data', dataDir, '--workers', '2', '--port', '0', '--host', '127.0.0.1',
        '--mqtt', 'embedded', '--mqttPort', '0', '--presenceFlushMs', '100', '--scryptCost', '1024',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(child);
    const logs = follow(child);
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
    child.kill('SIGTERM');
    await new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
  });
});
