import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { MQTT_BINDING, type MqttProtocolVersion } from '@router-fleet/protocol';
import { type BrokerDevice, type BrokerFleet, startBrokerFleet } from './brokers.js';
import { forkChild, nextMessage } from './child.js';
import { LoadtestError } from './errors.js';
import type { FloorClientsDone, FloorClientsStart } from './mqtt-floor-messages.js';
import { loopbackSources, type Percentiles, percentiles } from './stats.js';

/**
 * The raw MQTT floor: what Mosquitto and plain `mqtt` clients cost on this machine with no agent
 * and no server, measured over the same brokers as a run. Each client connects with its device's
 * credential (persistent MQTT 5 session), subscribes to its down topic and makes one hello-sized
 * QoS 1 round trip through a floor consumer (one plain client per bucket, as the server consumes);
 * then all stay connected while memory is measured. Memory per client = RSS growth ÷ clients of
 * the brokers (before any client → all connected) and of the client processes (after a GC).
 */
export interface MqttFloorOptions {
  /** Running brokers that know every device given (`startBrokerFleet`). */
  brokers: BrokerFleet;
  /** Devices to connect as (each on the broker of its bucket). */
  devices: readonly BrokerDevice[];
  /** Client processes the clients are spread over (each ≤ ~19,000 sockets). Default: one per 15,000. */
  processes?: number;
  /**
   * Clients in flight per process. Default 64: Mosquitto listens with a backlog of 100, and a wider
   * window only overflows it (dropped SYNs come back a second later).
   */
  window?: number;
  /** Source addresses 127.0.0.1…n the clients bind to. Default 4. */
  sourceAddresses?: number;
  /** MQTT 5 (default) or 3.1.1 (4). */
  protocolVersion?: MqttProtocolVersion;
  /** Keep-alive of the clients (s). Default 60. */
  keepaliveSec?: number;
  /** PEM CA of the brokers' TLS listeners (started with `tls`): the clients dial them over TLS. */
  caPem?: string;
}

export interface MqttFloorResult {
  /** `mqtts` when the clients dialled the brokers' TLS listeners. */
  transport: 'mqtt' | 'mqtts';
  protocolVersion: MqttProtocolVersion;
  brokers: number;
  clients: number;
  failed: number;
  /** A few failure messages. */
  errors: string[];
  /** Clients ÷ ramp time, where each client's ramp is connect + subscribe + one hello/welcome round trip. */
  connectsPerSec: number;
  connectMs: Percentiles;
  roundTripMs: Percentiles;
  /** Hellos the floor consumer answered. */
  answered: number;
  /** Growth of all brokers' RSS ÷ clients. Understates small runs: see BrokerFleet.heap. */
  brokerBytesPerClient: number;
  /** Growth of all brokers' heap in use ÷ clients (`$SYS/broker/heap/current`): the steadier figure. */
  brokerHeapBytesPerClient: number;
  /** Growth of the client processes' RSS ÷ clients (after a GC). */
  clientBytesPerClient: number;
  /** Brokers' RSS with the consumer subscribed and no client, and with every client connected (bytes). */
  brokerRss: { idle: number; loaded: number };
  brokerHeap: { idle: number; loaded: number };
  consumerRssBytes: number;
}

const GC = ['--expose-gc'];

interface Measured {
  type: 'measured';
  rss: number;
  heapUsed: number;
}

/** Waits for `type` from a child, or fails with the child's `{type:'failed', message}`. */
function nextOrFailed<T extends { type: string }>(child: ChildProcess, type: T['type'], timeoutMs: number): Promise<T> {
  return Promise.race([
    nextMessage<T>(child, type, timeoutMs),
    nextMessage<{ type: 'failed'; message: string }>(child, 'failed', timeoutMs + 1000).then((m) => {
      throw new LoadtestError('LOADTEST_BROKER_FAILED', m.message);
    }),
  ]);
}

export async function runMqttFloor(options: MqttFloorOptions): Promise<MqttFloorResult> {
  const { brokers, devices } = options;
  const protocolVersion = options.protocolVersion ?? 5;
  const processes = Math.max(1, options.processes ?? Math.ceil(devices.length / 15_000));
  const window = options.window ?? 64;
  const sources = loopbackSources(options.sourceAddresses ?? 4);
  const children: ChildProcess[] = [];
  try {
    const consumer = forkChild('mqtt-floor-consumer', [], GC);
    children.push(consumer);
    await nextMessage(consumer, 'ready');
    consumer.send({
      type: 'start',
      // Where the server would consume: the hub the shards bridge to, or the only broker.
      buckets: Array.from({ length: MQTT_BINDING.buckets }, (_, bucket) => ({ bucket, url: brokers.serverUrl })),
      username: brokers.server.username,
      password: brokers.server.password,
      protocolVersion,
    });
    await nextOrFailed(consumer, 'subscribed', 60_000);
    const brokerIdle = brokers.rss();
    const heapIdle = await brokers.heap();

    const per = Math.ceil(devices.length / processes);
    const clients = await Promise.all(
      Array.from({ length: processes }, async (_, i) => {
        const child = forkChild('mqtt-floor-clients', [], GC);
        children.push(child);
        await nextMessage(child, 'ready');
        const slice = devices.slice(i * per, (i + 1) * per).map((d) => ({ ...d, url: brokers.shardOf(d.deviceId).deviceUrl }));
        const order: FloorClientsStart = {
          type: 'start',
          devices: slice,
          window,
          sources,
          protocolVersion,
          keepaliveSec: options.keepaliveSec ?? 60,
          ...(options.caPem ? { caPem: options.caPem } : {}),
        };
        child.send(order);
        return child;
      }),
    );
    const done = await Promise.all(clients.map((c) => nextMessage<FloorClientsDone>(c, 'connected', 600_000)));
    // Timed inside the client processes (start-up excluded); they run in parallel.
    const rampMs = Math.max(...done.map((d) => d.elapsedMs));
    const brokerLoaded = brokers.rss();
    const heapLoaded = await brokers.heap();
    const clientMeasures = await Promise.all(
      clients.map((c) => {
        c.send({ type: 'measure' });
        return nextMessage<Measured>(c, 'measured');
      }),
    );
    consumer.send({ type: 'measure' });
    const consumerMeasure = await nextMessage<Measured & { answered: number }>(consumer, 'measured');
    const total = done.reduce((n, d) => n + d.count, 0);
    const clientGrowth = clientMeasures.reduce((n, m, i) => n + (m.rss - done[i]!.rssBefore), 0);
    return {
      transport: brokers.shards[0]!.deviceUrl.startsWith('mqtts:') ? 'mqtts' : 'mqtt',
      protocolVersion,
      brokers: brokers.shards.length,
      clients: total,
      failed: done.reduce((n, d) => n + d.failed, 0),
      errors: done.flatMap((d) => d.errors).slice(0, 5),
      connectsPerSec: rampMs > 0 ? Math.round(total / (rampMs / 1000)) : 0,
      connectMs: percentiles(done.flatMap((d) => d.connectMs)),
      roundTripMs: percentiles(done.flatMap((d) => d.roundTripMs)),
      answered: consumerMeasure.answered,
      brokerBytesPerClient: total ? Math.round((brokerLoaded - brokerIdle) / total) : 0,
      brokerHeapBytesPerClient: total ? Math.round((heapLoaded - heapIdle) / total) : 0,
      clientBytesPerClient: total ? Math.round(clientGrowth / total) : 0,
      brokerRss: { idle: brokerIdle, loaded: brokerLoaded },
      brokerHeap: { idle: heapIdle, loaded: heapLoaded },
      consumerRssBytes: consumerMeasure.rss,
    };
  } finally {
    // The client processes disconnect their clients and end their sessions before they exit.
    const exits = children.map((c) => new Promise<void>((resolve) => (c.exitCode !== null || c.signalCode !== null ? resolve() : c.once('exit', () => resolve()))));
    for (const c of children) if (c.connected) c.send({ type: 'stop' });
    const timer = setTimeout(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }, 30_000);
    await Promise.all(exits);
    clearTimeout(timer);
  }
}

/** Devices of a floor of its own (no server): ids and credentials made here. */
export function floorDevices(count: number): BrokerDevice[] {
  if (!Number.isInteger(count) || count < 1) throw new LoadtestError('LOADTEST_USAGE', 'the floor needs a positive whole number of clients');
  return Array.from({ length: count }, (_, i) => ({ deviceId: `floor-${String(i).padStart(6, '0')}`, credential: randomBytes(18).toString('base64url') }));
}

export interface StandaloneFloorOptions extends Omit<MqttFloorOptions, 'brokers' | 'devices'> {
  clients: number;
  /** Most clients one broker holds. Default 15,000. */
  devicesPerBroker?: number;
  log?: (text: string) => void;
}

/** Starts brokers of its own for `clients` floor devices, measures the floor, stops them. */
export async function measureMqttFloor(options: StandaloneFloorOptions): Promise<MqttFloorResult & { brokerTimings: BrokerFleet['timings'] }> {
  const devices = floorDevices(options.clients);
  const brokers = await startBrokerFleet({
    devices,
    ...(options.devicesPerBroker ? { devicesPerBroker: options.devicesPerBroker } : {}),
    ...(options.log ? { log: options.log } : {}),
  });
  try {
    const { clients: _clients, devicesPerBroker: _perBroker, log: _log, ...floor } = options;
    return { ...(await runMqttFloor({ ...floor, brokers, devices })), brokerTimings: brokers.timings };
  } finally {
    await brokers.close();
  }
}
