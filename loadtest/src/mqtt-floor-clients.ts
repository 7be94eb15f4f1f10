/**
 * Child process of the raw MQTT floor: plain `mqtt` clients, no agent. Each client connects with
 * its device's credential (MQTT 5: clean start false, the binding's session expiry), subscribes to
 * its down topic, publishes one hello on its up topic (QoS 1) and waits for the reply on down;
 * then it stays connected. A bounded window of clients is in flight at once.
 * IPC: gets {type:'start'} (FloorClientsStart), sends {type:'connected'} (FloorClientsDone);
 * answers {type:'measure'} and {type:'stop'} (every client disconnects and ends its session).
 */
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { MqttClient } from 'mqtt';
import { MQTT_SESSION_EXPIRY_SEC, mqttTopics } from '@router-fleet/protocol';
import { type FloorClientsDone, type FloorClientsStart, floorHello } from './mqtt-floor-messages.js';

const clients: MqttClient[] = [];
/** Samples kept: every one of the first 5,000, then one in ten. */
const keep = (samples: number[], i: number, v: number) => {
  if (samples.length < 5000 || i % 10 === 0) samples.push(Math.round(v * 10) / 10);
};

async function run(order: FloorClientsStart): Promise<void> {
  globalThis.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const connectMs: number[] = [];
  const roundTripMs: number[] = [];
  const errors: string[] = [];
  let failed = 0;
  const start = performance.now();
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const d = order.devices[i]!;
      const topics = mqttTopics(d.deviceId);
      const { hostname, port, protocol } = new URL(d.url);
      const secure = protocol === 'mqtts:';
      const localAddress = order.sources[i % order.sources.length];
      const t0 = performance.now();
      let tHello = 0;
      let done = false;
      const fail = (why: string) => {
        if (done) return;
        done = true;
        failed++;
        if (errors.length < 5) errors.push(`${d.deviceId}: ${why}`);
        client.end(true);
        resolve();
      };
      const at = { host: hostname, port: Number(port || (secure ? 8883 : 1883)), ...(localAddress ? { localAddress } : {}) };
      const client = new MqttClient(() => (secure ? tlsConnect({ ...at, ...(order.caPem ? { ca: order.caPem } : {}) }) : netConnect(at)), {
        protocolVersion: order.protocolVersion,
        clientId: d.deviceId,
        username: d.deviceId,
        password: d.credential,
        clean: false,
        keepalive: order.keepaliveSec,
        reconnectPeriod: 0,
        connectTimeout: 60_000,
        ...(order.protocolVersion === 5 ? { properties: { sessionExpiryInterval: MQTT_SESSION_EXPIRY_SEC } } : {}),
      });
      client.on('error', (err) => fail(err.message));
      client.on('close', () => fail('connection closed'));
      client.on('message', () => {
        if (done || !tHello) return;
        done = true;
        keep(roundTripMs, i, performance.now() - tHello);
        clients.push(client);
        resolve();
      });
      client.once('connect', () => {
        keep(connectMs, i, performance.now() - t0);
        client.subscribe(topics.down, { qos: 1 }, (err, granted) => {
          if (err || !granted?.length || (granted[0]!.qos ?? 0x80) >= 0x80) return fail(`subscribe refused: ${err?.message ?? granted?.[0]?.qos}`);
          tHello = performance.now();
          client.publish(topics.up, floorHello(d.deviceId, d.credential), { qos: 1 }, (e) => e && fail(`publish: ${e.message}`));
        });
      });
    });
  let next = 0;
  const workers = Array.from({ length: Math.min(order.window, order.devices.length) }, async () => {
    while (next < order.devices.length) await one(next++);
  });
  await Promise.all(workers);
  const done: FloorClientsDone = { type: 'connected', count: clients.length, failed, errors, elapsedMs: performance.now() - start, connectMs, roundTripMs, rssBefore };
  process.send!(done);
}

/** Disconnects every client and ends its session (MQTT 5: session expiry 0 on DISCONNECT), so the broker keeps nothing of the floor. */
async function stop(): Promise<void> {
  await Promise.all(
    clients.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.removeAllListeners('close');
          c.end(false, c.options.protocolVersion === 5 ? { properties: { sessionExpiryInterval: 0 } } : {}, () => resolve());
          setTimeout(resolve, 10_000).unref();
        }),
    ),
  );
  process.exit(0);
}

process.on('message', (m: { type: string }) => {
  if (m.type === 'start') void run(m as FloorClientsStart);
  else if (m.type === 'measure') {
    globalThis.gc?.();
    const mem = process.memoryUsage();
    process.send!({ type: 'measured', rss: mem.rss, heapUsed: mem.heapUsed, connections: clients.length });
  } else if (m.type === 'stop') void stop();
});
process.on('disconnect', () => process.exit(0));
process.send!({ type: 'ready' });
