import { pino, type Logger } from 'pino';
import { AdmissionService } from './admission/service.js';
import { AnalyticsService } from './analytics/service.js';
import { AuditService } from './audit/service.js';
import { AuthService } from './auth/service.js';
import { CertificateService } from './certificates/service.js';
import { LocalNoticeBus, type NoticeBus } from './channel/notices.js';
import { type Clock, systemClock, TestClock } from './clock.js';
import type { ServerConfig } from './config.js';
import { CredentialVault, loadOrCreateServerKey } from './devices/credentials.js';
import { DeviceService } from './devices/service.js';
import { DownloadTokens } from './jobs/download-token.js';
import { JobService } from './jobs/service.js';
import { LicensingService } from './licensing/service.js';
import { Metrics } from './metrics.js';
import { DEFAULT_PACKET_OPTIONS, type PacketOptions, PacketService } from './packets/service.js';
import { TrustAnchorService } from './pki/trust-anchors.js';
import { ProfileService } from './profiles/service.js';
import { SmartUpdateService } from './smart-updates/service.js';
import { StorageGuard } from './storage-guard.js';
import { Store } from './store/database.js';
import { TemplateService } from './templates/service.js';

/** What buildApp may be given instead of building it itself (tests pass a TestClock, a store...). */
export interface AppDeps {
  readonly clock?: Clock;
  /** An open store; the app then does not close it. */
  readonly store?: Store;
  readonly metrics?: Metrics;
  /** Where admission and settings changes go (cluster mode passes one that crosses processes). */
  readonly notices?: NoticeBus;
  /** Renders /metrics (cluster workers pass one that aggregates every process). Default: this process. */
  readonly renderMetrics?: (local: Metrics) => Promise<string>;
  /** Overrides of the packet and download limits (DEFAULT_PACKET_OPTIONS). */
  readonly packetOptions?: Partial<PacketOptions>;
  /**
   * The logger services log to (each takes a child carrying its component, and the job or device a
   * line is about). buildApp passes the app's; default: a pino logger at `config.logLevel`.
   */
  readonly logger?: Logger;
}

/** The health check's view of the server's dependencies. */
export interface HealthPort {
  /** Throws when the store does not answer. */
  ping(): void;
}

/** Every service of the server, wired once. The HTTP routes and (later) the channel use these. */
export interface Services {
  readonly config: ServerConfig;
  readonly clock: Clock;
  readonly store: Store;
  readonly metrics: Metrics;
  readonly admission: AdmissionService;
  readonly licensing: LicensingService;
  readonly auth: AuthService;
  readonly devices: DeviceService;
  readonly profiles: ProfileService;
  /** Update packets and the vendor firmware catalogue. */
  readonly packets: PacketService;
  /** Update jobs and their dispatch (attach the control channel with `jobs.attach(port)`). */
  readonly jobs: JobService;
  /** Admission and settings changes for open control-channel sessions. */
  readonly notices: NoticeBus;
  /** The append-only, hash-chained audit log (written by audit/hooks.ts for every mutating call). */
  readonly audit: AuditService;
  /** The certificate store (Basic and Pro). */
  readonly certificates: CertificateService;
  /** Configuration templates and template jobs (Basic and Pro). */
  readonly templates: TemplateService;
  /** Device analytics: consent (`events.on('consent')`), `ingest` for the channel, aggregates. */
  readonly analytics: AnalyticsService;
  /** Smart Updates: system jobs keeping devices on the newest compatible vendor firmware. */
  readonly smartUpdates: SmartUpdateService;
  /** Free space of the data directory, the full-disk mark and the reserve released to let deletes commit. */
  readonly storage: StorageGuard;
  /** The trust anchors devices get (server, vendor and account roots); key rotation. */
  readonly trust: TrustAnchorService;
  /** What the health check asks: whether the store answers (throws when it does not). */
  readonly health: HealthPort;
  /** The Prometheus text of /metrics (the whole server in cluster mode). */
  renderMetrics(): Promise<string>;
  /** Closes what these services own (the store unless it was given). */
  close(): void;
}

export function createServices(config: ServerConfig, deps: AppDeps = {}): Services {
  const clock = deps.clock ?? (config.testClock ? new TestClock() : systemClock);
  const store =
    deps.store ?? Store.select(config.store ?? undefined, config.dataDir, { busyTimeoutMs: config.storeBusyTimeoutMs, now: clock.now() });
  const metrics = deps.metrics ?? new Metrics();
  const log = deps.logger ?? pino({ level: config.logLevel });
  const storage = new StorageGuard(config.dataDir, config.storageReserveBytes, config.storageLowBytes);
  storage.replenish();
  const serverKey = loadOrCreateServerKey(config.dataDir);
  const vault = new CredentialVault(serverKey);
  const admission = new AdmissionService(store, clock, config, metrics);
  const licensing = new LicensingService(store, clock, admission);
  const auth = new AuthService(store, clock, config);
  const notices = deps.notices ?? new LocalNoticeBus();
  const devices = new DeviceService(store, clock, vault, licensing, admission, notices);
  const profiles = new ProfileService(config, vault, clock);
  const packets = new PacketService(store, clock, config.dataDir, { ...DEFAULT_PACKET_OPTIONS, ...deps.packetOptions });
  const jobs = new JobService(store, clock, licensing, packets, new DownloadTokens(serverKey), metrics, defaultPublicUrl(config), log);
  const audit = new AuditService(store, clock, metrics);
  const certificates = new CertificateService(store, clock, licensing);
  const templates = new TemplateService(store, clock, licensing, packets);
  jobs.setTemplateHook(templates);
  // Every process dispatches a new or resumed job at once, not at its next tick (cluster workers
  // hear of it through the primary; the process that started it already dispatches it itself).
  jobs.onRunnable(() => notices.publish({ kind: 'jobs-runnable' }));
  notices.subscribe((n) => {
    if (n.kind === 'jobs-runnable') jobs.dispatchSoon();
  });
  const analytics = new AnalyticsService(store, clock, licensing, notices, metrics);
  const smartUpdates = new SmartUpdateService(store, clock, licensing, packets, jobs, audit);
  const trust = new TrustAnchorService(config.dataDir, clock, packets, profiles, notices);
  profiles.useTrustAnchors((accountKey) => trust.forAccount(accountKey));
  admission.events.on('unmanaged', (c) =>
    notices.publish({ kind: 'admission', state: 'unmanaged', accountUuid: c.accountUuid, deviceUuids: c.deviceUuids, cause: c.cause }),
  );
  admission.events.on('managed', (c) =>
    notices.publish({ kind: 'admission', state: 'managed', accountUuid: c.accountUuid, deviceUuids: c.deviceUuids, cause: c.cause }),
  );
  return {
    config,
    clock,
    store,
    metrics,
    admission,
    licensing,
    auth,
    devices,
    profiles,
    packets,
    jobs,
    notices,
    audit,
    certificates,
    templates,
    analytics,
    smartUpdates,
    storage,
    trust,
    health: { ping: () => store.ping() },
    renderMetrics: () => (deps.renderMetrics ? deps.renderMetrics(metrics) : metrics.render()),
    close() {
      if (!deps.store) store.close();
    },
  };
}

/** Base URL for packet downloads in job offers when `publicUrl` is not configured. */
function defaultPublicUrl(config: ServerConfig): string {
  if (config.publicUrl) return config.publicUrl.replace(/^ws/, 'http').replace(/\/+$/, '');
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  return `${config.tlsCert ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${config.port}`;
}
