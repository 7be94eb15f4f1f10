import cluster from 'node:cluster';
import type { SessionRegistry } from '../channel/channel.js';
import { LocalNoticeBus, type Notice, type NoticeBus } from '../channel/notices.js';
import { mqttEnabled, type ServerConfig } from '../config.js';
import { main, type MqttStartOptions, type RunningServer } from '../main.js';
import type { Metrics } from '../metrics.js';
import { bucketsOfWorker, EMBEDDED_SERVER_USER } from '../channel/mqtt/topic-rules.js';
import { TickBatch } from '../tick-batch.js';
import { CLUSTER_ENV, isMessage, type PrimaryToWorker, type WorkerToPrimary } from './messages.js';

function send(message: WorkerToPrimary): void {
  // A worker whose primary is gone cannot do anything useful; it is about to be killed anyway.
  if (process.connected) process.send?.(message);
}

/** Notices go to the primary, which hands them to every worker (this one included). */
class WorkerNoticeBus extends LocalNoticeBus implements NoticeBus {
  override publish(notice: Notice): void {
    send({ t: 'notice', notice });
  }
}

/**
 * Tells the primary which devices this worker holds, one message per run of opens or closes in a
 * turn of the event loop instead of one per session: a ramp of 5,000 devices spent ~8 % of a
 * worker's busy time writing one IPC message per welcome.
 */
function heldRegistry(): SessionRegistry {
  const changes = new TickBatch<{ open: boolean; uuid: string }>((batch) => {
    let run: string[] = [];
    batch.forEach(({ open, uuid }, i) => {
      run.push(uuid);
      const next = batch[i + 1];
      if (next?.open === open) return;
      send(open ? { t: 'opened', uuids: run } : { t: 'closed', uuids: run });
      run = [];
    });
  });
  return {
    opened: (uuid) => changes.push({ open: true, uuid }),
    closed: (uuid) => changes.push({ open: false, uuid }),
  };
}

/** One worker of `serve --workers N`: the normal server, minus the sweeps, plus IPC to the primary. */
export async function runWorker(config: ServerConfig): Promise<RunningServer> {
  const notices = new WorkerNoticeBus();
  // Set once main() returns; a message before that finds no sessions to close.
  let server: RunningServer | undefined = undefined;
  let local: Metrics | undefined;
  let nextId = 1;
  const pending = new Map<number, (text: string) => void>();
  process.on('message', (m: unknown) => {
    if (!isMessage<PrimaryToWorker>(m)) return;
    switch (m.t) {
      case 'notice':
        notices.deliver(m.notice);
        break;
      case 'reconnect-all': {
        const closed = server?.app.channel.reconnectAll('server rejoining its cluster') ?? 0;
        server?.app.log.warn({ closed }, 'cluster member: sessions closed so that their devices are admitted again');
        break;
      }
      case 'metrics-snap-req': {
        const id = m.id;
        // A figure that cannot be read (the store closing) must not leave the scrape waiting.
        (local ? local.json() : Promise.resolve([])).then(
          (snap) => send({ t: 'metrics-snap', id, snap }),
          () => send({ t: 'metrics-snap', id, snap: [] }),
        );
        break;
      }
      case 'metrics-res':
        pending.get(m.id)?.(m.text);
        pending.delete(m.id);
        break;
    }
  });
  const renderMetrics = (metrics: Metrics) => {
    local = metrics;
    const id = nextId++;
    return new Promise<string>((resolve) => {
      // Without an answer in time, this worker's own figures are better than nothing.
      const timer = setTimeout(() => {
        pending.delete(id);
        resolve(metrics.render());
      }, config.metricsTimeoutMs + 500);
      pending.set(id, (text) => {
        clearTimeout(timer);
        // An empty answer: the primary could not merge; this worker's own figures then.
        resolve(text || metrics.render());
      });
      send({ t: 'metrics-req', id });
    });
  };
  const workerId = cluster.worker?.id ?? 0;
  const instanceId = process.env[CLUSTER_ENV.instanceId];
  server = await main(config, {
    ...(instanceId ? { instanceId } : {}),
    mqtt: mqttOfWorker(config),
    reconcileBrokerAccounts: false,
    notices,
    renderMetrics,
    runSweeps: false,
    channel: {
      registry: heldRegistry(),
      workerTag: `${workerId}/${process.pid}`,
    },
  });
  local = server.app.services.metrics;
  // The primary's embedded broker lets devices in once every worker's buckets are consumed.
  if (mqttEnabled(config)) send({ t: 'mqtt-consuming' });
  // The primary going away (crash) must not leave orphan workers holding the port.
  process.on('disconnect', () => {
    void server.close().finally(() => process.exit(0));
  });
  return server;
}

/** This worker's MQTT buckets and, with the embedded broker, the primary's broker (from the fork environment). */
function mqttOfWorker(config: ServerConfig): MqttStartOptions | undefined {
  if (!mqttEnabled(config)) return undefined;
  const env = process.env;
  const index = Number(env[CLUSTER_ENV.workerIndex] ?? '0');
  const buckets = bucketsOfWorker(index, config.workers);
  const url = env[CLUSTER_ENV.mqttUrl];
  const password = env[CLUSTER_ENV.mqttSecret];
  if (config.mqtt !== 'embedded') return { buckets };
  // Without the primary's broker a worker would start a broker of its own on the same port.
  if (!url || !password) throw new Error('cluster worker: the primary did not pass its embedded MQTT broker');
  // The secret is not kept in this process's environment (where children would inherit it).
  delete env[CLUSTER_ENV.mqttSecret];
  return {
    buckets,
    embedded: { url, username: EMBEDDED_SERVER_USER, password, fingerprint256: env[CLUSTER_ENV.mqttPin] },
    dropDevices: (deviceIds) => send({ t: 'mqtt-drop', deviceIds }),
  };
}
