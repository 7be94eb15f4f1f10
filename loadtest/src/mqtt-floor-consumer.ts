/**
 * Child process of the raw MQTT floor: the server's side without the server. One plain `mqtt`
 * client per bucket, on the broker that holds the bucket, subscribed (QoS 1) to the bucket's up and
 * presence filters with the server's account; every hello on up is answered with a welcome on that
 * device's down topic (QoS 1). Parsing and writing one JSON message each way is all it does.
 * IPC: gets {type:'start', buckets: {bucket, url}[], username, password, protocolVersion}; sends
 * {type:'subscribed'} when every bucket client has its subscription; answers {type:'measure'}
 * (RSS, heap, messages answered) and {type:'stop'}.
 */
import { connect as netConnect } from 'node:net';
import { MqttClient } from 'mqtt';
import { type MqttProtocolVersion, mqttBucketFilters, mqttTopics, parseMqttTopic } from '@router-fleet/protocol';
import { floorWelcome } from './mqtt-floor-messages.js';

interface Start {
  type: 'start';
  buckets: { bucket: number; url: string }[];
  username: string;
  password: string;
  protocolVersion: MqttProtocolVersion;
}

const clients: MqttClient[] = [];
let answered = 0;
let malformed = 0;

async function run(order: Start): Promise<void> {
  await Promise.all(
    order.buckets.map(
      ({ bucket, url }) =>
        new Promise<void>((resolve, reject) => {
          const { hostname, port } = new URL(url);
          const client = new MqttClient(() => netConnect({ host: hostname, port: Number(port || 1883) }), {
            protocolVersion: order.protocolVersion,
            // Not the server's own ids (`rf-server-b…`): a floor next to a running server must not take over its sessions.
            clientId: `rf-floor-b${bucket}`,
            username: order.username,
            password: order.password,
            clean: true,
            keepalive: 60,
            reconnectPeriod: 0,
            connectTimeout: 30_000,
          });
          clients.push(client);
          client.on('error', reject);
          client.on('message', (topic, payload) => {
            const t = parseMqttTopic(topic);
            if (!t || t.kind !== 'up') return;
            let helloId: string | undefined;
            try {
              helloId = (JSON.parse(payload.toString()) as { id?: string }).id;
            } catch {
              // counted below
            }
            if (typeof helloId !== 'string') {
              malformed++;
              return;
            }
            client.publish(mqttTopics(t.deviceId).down, floorWelcome(t.deviceId, helloId), { qos: 1 });
            answered++;
          });
          client.once('connect', () => {
            const f = mqttBucketFilters(bucket);
            client.subscribe([f.up, f.presence], { qos: 1 }, (err, granted) => {
              if (err) return reject(err);
              if (granted?.some((g) => g.qos >= 0x80)) return reject(new Error(`bucket ${bucket}: subscription refused (${granted.map((g) => g.qos).join(', ')})`));
              resolve();
            });
          });
        }),
    ),
  );
  process.send!({ type: 'subscribed' });
}

process.on('message', (m: { type: string }) => {
  if (m.type === 'start') {
    run(m as Start).catch((err: unknown) => {
      process.send!({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
    });
  } else if (m.type === 'measure') {
    globalThis.gc?.();
    const mem = process.memoryUsage();
    process.send!({ type: 'measured', rss: mem.rss, heapUsed: mem.heapUsed, answered, malformed });
  } else if (m.type === 'stop') {
    for (const c of clients) c.end(true);
    setTimeout(() => process.exit(0), 50);
  }
});
process.on('disconnect', () => process.exit(0));
process.send!({ type: 'ready' });
