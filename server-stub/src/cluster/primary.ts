import cluster, { type Worker } from 'node:cluster';
import { hostname } from 'node:os';
import { LocalNoticeBus, type Notice } from '../channel/notices.js';
import type { EmbeddedBroker } from '../channel/mqtt/embedded-broker.js';
import { startBrokerAccounts } from '../broker-accounts-start.js';
import type { ServerConfig } from '../config.js';
import { type MetricsJson, renderMerged } from '../metrics.js';
import { HostMembership, mqttConsumerRole } from '../hosts/membership.js';
import { prepareSharedMaterial } from '../hosts/prepare.js';
import { loadOrCreateSigningPki } from '../pki/signing.js';
import { isPostgresUrl } from '../store/database.js';
import { PostgresNoticeBus } from '../store/postgres/notices.js';
import { createServices } from '../services.js';
import { CLUSTER_ENV, isMessage, type PrimaryToWorker, type WorkerToPrimary } from './messages.js';
import { workerExecArgv } from './worker-flags.js';
import { pino } from 'pino';

/** A worker that dies sooner than this after it started counts as a crash loop (respawn backs off). */
const HEALTHY_AFTER_MS = 5_000;

/**
 * The cluster primary of `serve --workers N`. It does not serve: it forks the
 * workers (which share the port through node:cluster), runs the periodic licence sweep (only
 * one process must), fans notices out to every worker, aggregates /metrics, and when a worker
 * dies releases the leases of the devices that worker held (grace-period rule) and forks a
 * replacement.
 *
 * Why IPC through the primary rather than an outbox table: notices reach the other workers in
 * well under a millisecond without polling, the primary already has to watch its workers, and a
 * notice lost with a dying worker concerns only sessions that died with it (their devices
 * reconnect and get the current state in `welcome`). The store stays the single source of truth
 * for admission: every decision is a `BEGIN IMMEDIATE` transaction on the shared SQLite file.
 */
export async function runPrimary(config: ServerConfig): Promise<{ close(): Promise<void> }> {
  const log = pino({ level: config.logLevel, base: { pid: process.pid, role: 'primary' } });
  // Created once here, so the workers do not race to create the signing PKI and the schema. With a
  // PostgreSQL store other hosts may share, the cluster's shared material comes from the store
  // first, and notices travel between hosts through it (the workers' reach them through here).
  await prepareSharedMaterial(config);
  await loadOrCreateSigningPki(config.dataDir);
  const pgBus = config.store !== null && isPostgresUrl(config.store) ? new PostgresNoticeBus(config.store) : undefined;
  const notices = pgBus ?? new LocalNoticeBus();
  await pgBus?.start(log);
  const services = createServices(config, { notices, logger: log });
  // On a PostgreSQL store other hosts may share, this host is one member of their cluster
  // (hosts/membership.ts): the primary heartbeats for its workers, whose leases name it, and runs
  // the once-per-cluster work below only while it holds the background role.
  const membership =
    services.store.dialect === 'postgres'
      ? new HostMembership({
          store: services.store,
          admission: services.admission,
          log,
          timeoutMs: config.hostTimeoutSec * 1000,
          label: `${hostname()}/${process.pid} (primary of ${config.workers} workers)`,
          onDeclaredDead: () => broadcast({ t: 'reconnect-all' }),
          ...(config.mqttUrl !== null ? { exclusiveRoles: [mqttConsumerRole(config.mqttUrl)] } : {}),
        })
      : undefined;
  const leads = () => membership?.leads() ?? true;
  services.metrics.gauge('fleet_workers', 'Worker processes alive.', () => Object.keys(cluster.workers ?? {}).length, {
    aggregate: 'max',
  });

  const held = new Map<number, Set<string>>(); // worker id → device uuids it holds
  // worker id → its index 0 … workers − 1: the MQTT buckets it consumes (b % workers === index).
  // A replacement takes the index of the worker it replaces, so it resumes the same bucket sessions.
  const indexOf = new Map<number, number>();
  const startedAt = new Map<number, number>();
  let crashes = 0;
  let shuttingDown = false;

  const broadcast = (message: PrimaryToWorker) => {
    for (const w of Object.values(cluster.workers ?? {})) if (w?.isConnected()) w.send(message);
  };
  notices.subscribe((n: Notice) => broadcast({ t: 'notice', notice: n }));

  // /metrics: ask every worker for its figures, merge, answer the one that was scraped.
  let metricsSeq = 0;
  const scrapes = new Map<number, { snaps: MetricsJson[]; waiting: number; done: (text: string) => void }>();
  const scrape = (reply: (text: string) => void) => {
    const id = ++metricsSeq;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected());
    const finish = () => {
      const s = scrapes.get(id);
      if (!s) return;
      scrapes.delete(id);
      clearTimeout(timer);
      services.metrics
        .json()
        .then((own) => renderMerged([own, ...s.snaps]))
        .then(reply, (err: unknown) => {
          log.error({ err }, 'merging the workers\' metrics failed');
          reply('');
        });
    };
    const timer = setTimeout(finish, config.metricsTimeoutMs);
    scrapes.set(id, { snaps: [], waiting: workers.length, done: finish });
    for (const w of workers) w.send({ t: 'metrics-snap-req', id } satisfies PrimaryToWorker);
    if (workers.length === 0) finish();
  };

  const onMessage = (worker: Worker, m: unknown) => {
    if (!isMessage<WorkerToPrimary>(m)) return;
    switch (m.t) {
      case 'opened': {
        const set = held.get(worker.id);
        if (set) for (const uuid of m.uuids) set.add(uuid);
        break;
      }
      case 'closed': {
        const set = held.get(worker.id);
        if (set) for (const uuid of m.uuids) set.delete(uuid);
        break;
      }
      case 'notice':
        notices.publish(m.notice);
        break;
      case 'metrics-req':
        scrape((text) => {
          if (worker.isConnected()) worker.send({ t: 'metrics-res', id: m.id, text } satisfies PrimaryToWorker);
        });
        break;
      case 'mqtt-consuming':
        consumed(worker);
        break;
      case 'mqtt-drop':
        broker?.dropDevices(m.deviceIds);
        break;
      case 'metrics-snap': {
        const s = scrapes.get(m.id);
        if (!s) break;
        s.snaps.push(m.snap);
        if (--s.waiting <= 0) s.done('');
        break;
      }
    }
  };

  // The embedded broker runs here: devices' MQTT connections outlive a worker, and a restarted
  // worker resumes its buckets' sessions (with what was queued meanwhile) at the same broker.
  let broker: EmbeddedBroker | undefined;
  if (config.mqtt === 'embedded') {
    const { embeddedTls, startEmbeddedBroker } = await import('../channel/mqtt/embedded-broker.js');
    broker = await startEmbeddedBroker({
      host: config.host,
      port: config.mqttPort,
      tls: embeddedTls(config),
      authenticateDevice: (uuid, credential) => services.admission.authenticate(uuid, credential),
      log,
      metrics: services.metrics,
    });
  }
  // Devices are let in once every worker index has reported its bucket clients subscribed (or
  // their start timeout, after which the clients not yet subscribed keep trying): a hello
  // published before its bucket has a session at the broker reaches nobody, and the device waits
  // for a welcome. Once per broker life: from then on each bucket's session (persistent, kept here
  // while a worker is replaced) holds what its devices publish until the worker's clients resume
  // it. (Making the sessions here instead, before any worker runs, would take aedes' persistence
  // internals, which have no public API for a session without a connection, or 64 connections of
  // the primary's own.)
  const consuming = new Set<number>();
  const consumed = (worker: Worker) => {
    const index = indexOf.get(worker.id);
    if (!broker || index === undefined || consuming.size === config.workers) return;
    consuming.add(index);
    if (consuming.size < config.workers) return;
    broker.acceptDevices();
    log.info({ workers: config.workers }, 'embedded broker: every worker consumes its buckets; devices let in');
  };
  const accounts = await startBrokerAccounts(config, services, log, { reconcile: true });
  const brokerEnv = broker
    ? {
        [CLUSTER_ENV.mqttUrl]: broker.url,
        [CLUSTER_ENV.mqttSecret]: broker.serverPassword,
        ...(broker.fingerprint256 ? { [CLUSTER_ENV.mqttPin]: broker.fingerprint256 } : {}),
      }
    : {};

  cluster.setupPrimary({ execArgv: workerExecArgv(process.execArgv, process.env['NODE_OPTIONS'], config.workerOldSpaceMb) });
  const fork = (index: number) => {
    const w = cluster.fork({
      FLEET_SERVER_WORKER: '1',
      [CLUSTER_ENV.workerIndex]: String(index),
      ...brokerEnv,
      ...(membership ? { [CLUSTER_ENV.instanceId]: membership.instanceId } : {}),
    });
    indexOf.set(w.id, index);
    held.set(w.id, new Set());
    startedAt.set(w.id, Date.now());
    w.on('message', (m: unknown) => onMessage(w, m));
    w.on('online', () => log.info({ workerId: w.id, workerPid: w.process.pid }, 'worker online'));
    // A fork that fails (EMFILE: the primary itself out of files) must not take the primary down:
    // without a process there is no 'exit', so the replacement is retried here.
    w.on('error', (err) => {
      log.error({ err, workerId: w.id }, 'worker process error');
      if (w.process.pid !== undefined || shuttingDown) return;
      held.delete(w.id);
      startedAt.delete(w.id);
      indexOf.delete(w.id);
      setTimeout(() => {
        if (!shuttingDown) fork(index);
      }, 1000).unref();
    });
    return w;
  };

  cluster.on('exit', (w, code, signal) => {
    const devices = [...(held.get(w.id) ?? [])];
    held.delete(w.id);
    const index = indexOf.get(w.id) ?? 0;
    indexOf.delete(w.id);
    // A device that already reconnected to another worker keeps its lease.
    const elsewhere = new Set<string>();
    for (const set of held.values()) for (const u of set) elsewhere.add(u);
    const orphans = devices.filter((u) => !elsewhere.has(u));
    try {
      if (orphans.length) services.admission.releaseMany(orphans, services.clock.now());
      services.admission.presence.flush();
    } catch (err) {
      log.error({ err }, 'releasing a dead worker\'s devices failed');
    }
    if (shuttingDown) return;
    log.warn({ workerId: w.id, workerPid: w.process.pid, code, signal, released: orphans.length }, 'worker exited; replacing it');
    const lived = Date.now() - (startedAt.get(w.id) ?? 0);
    startedAt.delete(w.id);
    crashes = lived < HEALTHY_AFTER_MS ? crashes + 1 : 0;
    const delay = crashes === 0 ? 0 : Math.min(30_000, 250 * 2 ** Math.min(crashes, 7));
    setTimeout(() => {
      if (!shuttingDown) fork(index);
    }, delay).unref();
  });

  // Before the first worker serves a device: the previous process life's seats are held for their
  // devices. The primary decides when the cluster has caught up, for this hold and for one a
  // worker starts when its bucket clients lose the MQTT broker (read from the store): returns are
  // counted in the store (whichever worker admitted them); the workers' hello backlog is not seen
  // here, so the quiet period alone (restartQuietSec) stands for it.
  // Among several hosts only when the whole cluster starts: a host joining a running cluster holds
  // nothing (the devices connected to the others are theirs).
  const hold = () => {
    const start = services.admission.startRestartHold();
    if (start.held > 0) log.info({ held: start.held }, 'restart hold: seats of the previous process life held for their devices');
  };
  let coldStart = true;
  if (membership) {
    coldStart = membership.start(hold).coldStart;
    membership.run();
  } else hold();
  // The hold is decided once every first worker listens: forking and loading them takes seconds
  // under load, time in which no device can return and which must not count as quiet.
  const listening = new Set<number>();
  let serving = false;
  cluster.on('listening', (w) => {
    listening.add(w.id);
    if (serving || listening.size < config.workers) return;
    serving = true;
    // Joining a running cluster: its hold (if one runs) counts from when its own start served.
    if (!coldStart) return;
    try {
      services.admission.holdServing();
    } catch (err) {
      log.error({ err }, 'restart hold: recording the start of service failed');
    }
  });
  for (let i = 0; i < config.workers; i++) fork(i);

  const timers = [
    setInterval(() => {
      if (!serving || !leads()) return;
      try {
        const end = services.admission.checkHold(0);
        if (end) log.info(end, 'seat hold: caught up with the reconnecting fleet; grace starts for devices not back');
      } catch (err) {
        log.error({ err }, 'seat hold check failed');
      }
    }, 1000),
    setInterval(() => {
      if (!leads()) return;
      try {
        services.admission.sweep();
        services.metrics.inc('fleet_licence_sweeps_total');
      } catch (err) {
        log.error({ err }, 'licence sweep failed');
      }
    }, config.sweepIntervalSec * 1000),
    setInterval(() => {
      try {
        services.admission.presence.flush();
      } catch (err) {
        log.error({ err }, 'presence flush failed');
      }
    }, config.presenceFlushMs),
  ];
  log.info({ workers: config.workers, dataDir: config.dataDir }, 'fleet-server cluster primary started');

  const close = async () => {
    if (shuttingDown) return;
    shuttingDown = true;
    for (const t of timers) clearInterval(t);
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
    await Promise.race([
      Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.isDead()) return resolve();
              w.once('exit', () => resolve());
              w.process.kill('SIGTERM');
            }),
        ),
      ),
      new Promise<void>((resolve) => setTimeout(resolve, config.shutdownTimeoutMs).unref()),
    ]);
    for (const w of workers) if (!w.isDead()) w.process.kill('SIGKILL');
    await accounts?.close().catch((err: unknown) => log.error({ err }, 'closing the broker accounts failed'));
    await broker?.close();
    services.admission.presence.flush();
    // After the workers released their devices: the other hosts need not.
    try {
      membership?.stop();
    } catch (err) {
      log.error({ err }, 'leaving the cluster failed');
    }
    await pgBus?.close();
    services.close();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal }, 'shutting down the cluster');
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return { close };
}
