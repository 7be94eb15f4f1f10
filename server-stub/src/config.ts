import {
  type ConfigInput as SharedConfigInput,
  loadConfigTable,
  optionEnvName,
  type OptionSpec as SharedOptionSpec,
  readConfigFile,
} from '@router-fleet/protocol/config';
import { AppError } from './errors.js';

/**
 * The server's one configuration table. Each option is read from, in order of precedence, command
 * line flags, the environment (`FLEET_SERVER_<NAME>`), a JSON file (`--config FILE`) and the
 * default. The result is validated once and frozen; nothing reads configuration at import time. The
 * loader and its parsing rules are protocol's (`@router-fleet/protocol/config`), shared with the agent.
 */
export interface ServerConfig {
  readonly dataDir: string;
  readonly store: string | null;
  readonly host: string;
  readonly port: number;
  readonly tlsCert: string | null;
  readonly tlsKey: string | null;
  readonly workers: number;
  readonly workerOldSpaceMb: number;
  readonly testClock: boolean;
  readonly logLevel: string;
  readonly bodyLimitBytes: number;
  readonly csvBodyLimitBytes: number;
  readonly csvMaxRows: number;
  readonly pageSizeDefault: number;
  readonly pageSizeMax: number;
  readonly sessionTtlSec: number;
  readonly leaseGraceSec: number;
  readonly admissionRetryAfterSec: number;
  readonly sweepIntervalSec: number;
  readonly restartQuietSec: number;
  readonly restartHoldMaxSec: number;
  readonly presenceFlushMs: number;
  readonly trustAnchorReloadSec: number;
  readonly hostTimeoutSec: number;
  readonly loginMaxFailures: number;
  readonly loginLockoutSec: number;
  readonly loginRateLimitPerMinute: number;
  readonly scryptCost: number;
  readonly shutdownTimeoutMs: number;
  readonly storeBusyTimeoutMs: number;
  readonly storeProfile: string | null;
  readonly publicUrl: string | null;
  readonly tlsCa: string | null;
  readonly helloTimeoutMs: number;
  readonly channelSweepMs: number;
  readonly channelMaxBadMessages: number;
  readonly channelMaxBufferedBytes: number;
  readonly metricsTimeoutMs: number;
  readonly allowPlainHttp: boolean;
  readonly httpRequestTimeoutMs: number;
  readonly httpHeadersTimeoutMs: number;
  readonly httpKeepAliveTimeoutMs: number;
  readonly httpIdleTimeoutMs: number;
  readonly storageReserveBytes: number;
  readonly storageLowBytes: number;
  readonly loginAuditSummarySec: number;
  readonly mqtt: 'off' | 'embedded';
  readonly mqttUrl: string | null;
  readonly mqttUsername: string;
  readonly mqttPassword: string | null;
  readonly mqttAdminUsername: string | null;
  readonly mqttAdminPassword: string | null;
  readonly mqttCa: string | null;
  readonly mqttPort: number;
  readonly mqttPublicUrl: string | null;
  readonly deviceTransport: 'ws' | 'mqtt';
}

/** One row of the server's configuration table (the shared loader's row, named by this config's keys). */
export type OptionSpec = SharedOptionSpec<keyof ServerConfig>;

export const configTable: readonly OptionSpec[] = [
  { name: 'dataDir', type: 'string', default: undefined, unit: 'path', description: 'Data directory (SQLite store, server key).' },
  { name: 'store', type: 'string', default: null, unit: 'URL', description: 'Where the store lives: unset = the SQLite file in dataDir (the default); `postgres://user@host:port/database` = that PostgreSQL database, which several server processes and hosts may share (each host keeps a copy of the shared material in its own dataDir: server key, signing PKI, local TLS CA and packet files live in the store, see docs/multi-host.md).' },
  { name: 'host', type: 'string', default: '127.0.0.1', unit: 'address', description: 'Address to listen on (loopback by default: serving other hosts is a decision, see allowPlainHttp).' },
  { name: 'port', type: 'integer', default: 8080, unit: 'port', min: 0, max: 65535, description: 'TCP port (0 = any free port).' },
  { name: 'tlsCert', type: 'string', default: null, unit: 'path', description: 'PEM certificate chain; enables HTTPS together with tlsKey.' },
  { name: 'tlsKey', type: 'string', default: null, unit: 'path', description: 'PEM private key for tlsCert.' },
  { name: 'workers', type: 'integer', default: 1, unit: 'processes', min: 1, max: 64, description: 'Worker processes (node:cluster) sharing the port and the store; 1 = no cluster.' },
  { name: 'workerOldSpaceMb', type: 'integer', default: 512, unit: 'MiB', min: 0, max: 65536, description: 'V8 old-generation size below which a worker process (workers > 1) does not start a full garbage collection by heap growth alone (`--initial-old-space-size`; 0 = V8\'s own sizing). A worker\'s heap grows with the sessions it keeps, and by V8\'s own sizing it then collected every 5 to 10 MB of growth: about three times as many full collections during a 50,000-device admission ramp. An `--initial-old-space-size` given to the server itself wins; a smaller `--max-old-space-size` caps it.' },
  { name: 'testClock', type: 'boolean', default: false, unit: 'flag', description: 'Start with a movable clock and expose POST /api/test/clock (admins only). Never in production.' },
  { name: 'logLevel', type: 'string', default: 'info', unit: 'level', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], description: 'pino log level.' },
  { name: 'bodyLimitBytes', type: 'integer', default: 1_048_576, unit: 'bytes', min: 1024, description: 'Largest JSON request body.' },
  { name: 'csvBodyLimitBytes', type: 'integer', default: 33_554_432, unit: 'bytes', min: 1024, description: 'Largest CSV import body.' },
  { name: 'csvMaxRows', type: 'integer', default: 100_000, unit: 'rows', min: 1, description: 'Most data rows accepted in one CSV import.' },
  { name: 'pageSizeDefault', type: 'integer', default: 50, unit: 'items', min: 1, description: 'Page size of lists when `limit` is not given.' },
  { name: 'pageSizeMax', type: 'integer', default: 500, unit: 'items', min: 1, description: 'Largest page size; larger `limit` values are capped.' },
  { name: 'sessionTtlSec', type: 'integer', default: 43_200, unit: 's', min: 60, description: 'Lifetime of a login token.' },
  { name: 'leaseGraceSec', type: 'integer', default: 300, unit: 's', min: 0, description: 'How long a disconnected device keeps its licence lease for reclaim.' },
  { name: 'admissionRetryAfterSec', type: 'integer', default: 300, unit: 's', min: 1, description: 'Retry-after told to a device rejected for want of a licence (when no lease ends sooner).' },
  { name: 'sweepIntervalSec', type: 'integer', default: 60, unit: 's', min: 1, description: 'Period of the licence sweep (grace reclaim, expiry, notices).' },
  { name: 'restartQuietSec', type: 'integer', default: 300, unit: 's', min: 1, description: 'After a start or crash, or the loss of the MQTT broker, the seats held for the devices the server lost wait for them until no held device has returned for this long (counted once the devices can reach the server again) and no hello waits (then their grace period starts; docs/licensing.md).' },
  { name: 'restartHoldMaxSec', type: 'integer', default: 1800, unit: 's', min: 0, description: 'Longest such hold: the grace period of held seats starts at the latest this long after the start or the loss of the broker (0 = no hold).' },
  { name: 'trustAnchorReloadSec', type: 'integer', default: 60, unit: 's', min: 1, description: 'Period at which the signing and vendor roots are re-read from the data directory (the CLI may rotate or import while the server runs); changed sets are sent to connected devices.' },
  { name: 'hostTimeoutSec', type: 'integer', default: 15, unit: 's', min: 1, max: 3600, description: 'With a PostgreSQL store, several server processes and hosts share it: a process whose heartbeat (sent four times per period) is this late is dead and another releases its devices (a crashed one is seen at the next heartbeat: its store connection is gone); also the lease of the role that runs the once-per-cluster work (licence sweep, seat hold, job timeouts, Smart Updates, session purge).' },
  { name: 'presenceFlushMs', type: 'integer', default: 1000, unit: 'ms', min: 10, description: 'Period at which device presence (online, last seen) is written in one batch.' },
  { name: 'loginMaxFailures', type: 'integer', default: 5, unit: 'attempts', min: 1, description: 'Failed logins in a row that lock a user.' },
  { name: 'loginLockoutSec', type: 'integer', default: 900, unit: 's', min: 1, description: 'How long a locked user stays locked.' },
  { name: 'loginRateLimitPerMinute', type: 'integer', default: 30, unit: 'requests/min', min: 1, description: 'Login attempts allowed per client address and minute.' },
  { name: 'loginAuditSummarySec', type: 'integer', default: 60, unit: 's', min: 1, description: 'Failed logins are written to the audit log as one summary per account and period of this length.' },
  { name: 'scryptCost', type: 'integer', default: 16_384, unit: 'N', min: 1024, description: 'scrypt cost parameter for new password hashes (power of two).' },
  { name: 'shutdownTimeoutMs', type: 'integer', default: 10_000, unit: 'ms', min: 0, description: 'Longest graceful shutdown before the process exits anyway.' },
  { name: 'storeBusyTimeoutMs', type: 'integer', default: 5_000, unit: 'ms', min: 0, description: 'How long a store write waits for another process holding the write lock.' },
  { name: 'storeProfile', type: 'string', default: null, unit: 'path', description: 'PostgreSQL store only, a diagnostic: a directory where each process writes its store round trips counted by statement text, with their time and callers (`pg-profile-PID-N.json`, every 10 s and at exit). Off by default.' },
  { name: 'publicUrl', type: 'string', default: null, unit: 'URL', description: 'Base URL devices reach the server at (`https://host:port`), written into connection profiles; default from host, port and TLS.' },
  { name: 'tlsCa', type: 'string', default: null, unit: 'path', description: 'PEM of the CA that verifies the TLS certificate, for connection profiles; default `DATA/tls/ca.pem` when present, else the last certificate of tlsCert.' },
  { name: 'helloTimeoutMs', type: 'integer', default: 10_000, unit: 'ms', min: 10, description: 'How long a new control-channel connection may take to send its hello.' },
  { name: 'channelSweepMs', type: 'integer', default: 1_000, unit: 'ms', min: 10, description: 'Period of the one keep-alive sweep over all sessions (pings, pong and hello timeouts).' },
  { name: 'channelMaxBadMessages', type: 'integer', default: 10, unit: 'messages', min: 1, description: 'Bad messages in a row after which a device is disconnected (close 1008).' },
  { name: 'channelMaxBufferedBytes', type: 'integer', default: 1_048_576, unit: 'bytes', min: 65_536, description: 'Unsent bytes queued for one device before it is dropped as a slow consumer.' },
  { name: 'allowPlainHttp', type: 'boolean', default: false, unit: 'flag', description: 'Allow plain HTTP (no tlsCert) on a non-loopback host. Without it such a configuration is refused: tokens, passwords and device credentials would cross the network in clear.' },
  { name: 'httpRequestTimeoutMs', type: 'integer', default: 300_000, unit: 'ms', min: 100, description: 'Longest time to receive one whole request, headers and body (408 SERVER_REQUEST_TIMEOUT, connection closed). Packet uploads must fit in it.' },
  { name: 'httpHeadersTimeoutMs', type: 'integer', default: 20_000, unit: 'ms', min: 100, description: 'Longest time to receive the headers of a request (at most httpRequestTimeoutMs).' },
  { name: 'httpKeepAliveTimeoutMs', type: 'integer', default: 5_000, unit: 'ms', min: 100, description: 'How long an idle keep-alive connection waits for its next request before it is closed.' },
  { name: 'httpIdleTimeoutMs', type: 'integer', default: 120_000, unit: 'ms', min: 100, description: 'A connection on which no byte moves either way for this long is closed (not upgraded control channels: they have their own keep-alive).' },
  { name: 'storageReserveBytes', type: 'integer', default: 1_048_576, unit: 'bytes', min: 0, description: 'Size of the reserve file kept in the data directory and released when the disk is full, so that deletes (which free space) can still commit. 0 = none.' },
  { name: 'storageLowBytes', type: 'integer', default: 16_777_216, unit: 'bytes', min: 0, description: 'Free space in the data directory below which /healthz reports degraded.' },
  { name: 'metricsTimeoutMs', type: 'integer', default: 2_000, unit: 'ms', min: 10, description: 'How long /metrics waits for the other workers\' figures in cluster mode.' },
  { name: 'mqtt', type: 'string', default: 'off', unit: 'mode', choices: ['off', 'embedded'], description: 'The MQTT control channel: `embedded` runs a broker in the server process (MQTT 3.1.1 on mqttPort, devices authenticated against the store); `off` = none unless mqttUrl names an external broker.' },
  { name: 'mqttUrl', type: 'string', default: null, unit: 'URL', description: 'External broker the server consumes device uplinks from (`mqtts://host:port`, MQTT 5; `mqtt://` only on loopback or with allowPlainHttp). Turns MQTT on; not together with `mqtt: embedded`.' },
  { name: 'mqttUsername', type: 'string', default: 'rf-server', unit: 'name', description: 'The server\'s account at the external broker (its bucket clients are `rf-server-b{bucket}`).' },
  { name: 'mqttPassword', type: 'string', default: null, unit: 'secret', description: 'Password of mqttUsername at the external broker (the embedded broker makes a random one at start).' },
  { name: 'mqttAdminUsername', type: 'string', default: null, unit: 'name', description: 'Dynamic-security admin at the external Mosquitto: with mqttAdminPassword the server provisions device accounts there.' },
  { name: 'mqttAdminPassword', type: 'string', default: null, unit: 'secret', description: 'Password of mqttAdminUsername.' },
  { name: 'mqttCa', type: 'string', default: null, unit: 'path', description: 'PEM of the CA that verifies the external broker\'s TLS certificate (added to the system CAs); default the system CAs.' },
  { name: 'mqttPort', type: 'integer', default: 8883, unit: 'port', min: 0, max: 65535, description: 'TCP port of the embedded broker on `host` (0 = any free port): TLS with tlsCert/tlsKey, plain MQTT only where plain HTTP is allowed.' },
  { name: 'mqttPublicUrl', type: 'string', default: null, unit: 'URL', description: 'Broker URL devices dial (`mqtts://host:port`), written into connection profiles; default mqttUrl, or the embedded broker\'s address as for the HTTP side.' },
  { name: 'deviceTransport', type: 'string', default: 'ws', unit: 'transport', choices: ['ws', 'mqtt'], description: 'Control-channel transport named in new connection profiles: `ws` (WebSocket on the HTTP port) or `mqtt` (the broker; needs mqtt or mqttUrl).' },
];

export type ConfigInput = SharedConfigInput<keyof ServerConfig>;

/** Whether the configuration turns the MQTT control channel on (embedded broker or an external one). */
export function mqttEnabled(config: Pick<ServerConfig, 'mqtt' | 'mqttUrl'>): boolean {
  return config.mqtt === 'embedded' || config.mqttUrl !== null;
}

/** `leaseGraceSec` → `FLEET_SERVER_LEASE_GRACE_SEC`. */
export function envName(name: string): string {
  return optionEnvName('FLEET_SERVER', name);
}

export interface ConfigSources {
  flags?: ConfigInput;
  env?: NodeJS.ProcessEnv | Record<string, string | undefined>;
  /** Path of a JSON file with option names as keys. */
  file?: string | null;
  /** Already-parsed file content (instead of `file`). */
  fileContent?: ConfigInput;
}

/**
 * True for addresses only this machine can reach: 127.0.0.0/8, ::1 (also IPv4-mapped) and `localhost`.
 * The wildcard addresses (`0.0.0.0`, `::`) and every other name count as reachable from the network.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

const configError = (message: string) => new AppError('SERVER_CONFIG_INVALID', message);

function crossCheck(config: ServerConfig): string | undefined {
  if ((config.tlsCert === null) !== (config.tlsKey === null)) return 'tlsCert and tlsKey must be given together';
  if (config.tlsCert === null && !config.allowPlainHttp && !isLoopbackHost(config.host)) {
    return `refusing plain HTTP on ${config.host}, which is not a loopback address: give tlsCert and tlsKey (--tls-cert, --tls-key), `
      + 'listen on 127.0.0.1, or accept clear-text traffic with --allow-plain-http (e.g. behind a TLS-terminating proxy)';
  }
  if (config.store !== null && !/^postgres(ql)?:\/\/[^\s]+$/i.test(config.store)) {
    return 'store must be a postgres:// URL (leave it unset for the SQLite file in dataDir)';
  }
  if (config.pageSizeDefault > config.pageSizeMax) return 'pageSizeDefault must not exceed pageSizeMax';
  if (config.testClock && config.workers > 1) {
    return 'testClock needs a single process (workers = 1): each worker would have its own clock';
  }
  if (config.publicUrl !== null) {
    let protocol = '';
    try {
      protocol = new URL(config.publicUrl).protocol;
    } catch {
      // not a URL: refused just below
    }
    if (!['http:', 'https:', 'ws:', 'wss:'].includes(protocol)) return 'publicUrl must be an http(s):// or ws(s):// URL';
  }
  if (config.httpHeadersTimeoutMs > config.httpRequestTimeoutMs) return 'httpHeadersTimeoutMs must not exceed httpRequestTimeoutMs';
  if ((config.scryptCost & (config.scryptCost - 1)) !== 0) return 'scryptCost must be a power of two';
  return mqttCheck(config);
}

function mqttUrlOf(url: string): URL | undefined {
  try {
    const u = new URL(url);
    return u.protocol === 'mqtt:' || u.protocol === 'mqtts:' ? u : undefined;
  } catch {
    return undefined;
  }
}

function mqttCheck(config: ServerConfig): string | undefined {
  if (config.mqtt === 'embedded' && config.mqttUrl !== null) return 'mqtt embedded and mqttUrl exclude each other: one broker serves the devices';
  if (config.mqttUrl !== null) {
    const u = mqttUrlOf(config.mqttUrl);
    if (!u) return 'mqttUrl must be an mqtt:// or mqtts:// URL';
    if (u.protocol === 'mqtt:' && !config.allowPlainHttp && !isLoopbackHost(u.hostname)) {
      return `refusing plain MQTT to ${u.hostname}, which is not a loopback address: use mqtts://, or accept clear text with --allow-plain-http`;
    }
  }
  if (config.mqttPublicUrl !== null && !mqttUrlOf(config.mqttPublicUrl)) return 'mqttPublicUrl must be an mqtt:// or mqtts:// URL';
  if ((config.mqttAdminUsername === null) !== (config.mqttAdminPassword === null)) return 'mqttAdminUsername and mqttAdminPassword must be given together';
  if (config.mqttAdminUsername !== null && config.mqttUrl === null) return 'mqttAdminUsername needs mqttUrl (device accounts are kept at an external broker)';
  if (config.deviceTransport === 'mqtt' && config.mqtt === 'off' && config.mqttUrl === null) {
    return 'deviceTransport mqtt needs a broker: --mqtt embedded or --mqtt-url';
  }
  return undefined;
}

/**
 * Merges flags > env > file > defaults, validates and freezes, by the shared loader's rules
 * (`@router-fleet/protocol/config`). Throws SERVER_CONFIG_INVALID.
 */
export function loadConfig(sources: ConfigSources = {}): ServerConfig {
  const file = sources.file ? readConfigFile(sources.file, configError) : sources.fileContent;
  return loadConfigTable<ServerConfig>(configTable, { flags: sources.flags, env: sources.env, file }, {
    envPrefix: 'FLEET_SERVER',
    error: configError,
    check: crossCheck,
  });
}

/** The table as Markdown (name, type, default, unit, env, description), for docs and `--help`. */
export function configTableMarkdown(): string {
  const rows = configTable.map(
    (s) =>
      `| \`${s.name}\` | ${s.type} | ${s.default === undefined ? '(required)' : `\`${String(s.default)}\``} | ${s.unit} | \`${envName(s.name)}\` | ${s.description} |`,
  );
  return ['| name | type | default | unit | environment | description |', '| --- | --- | --- | --- | --- | --- |', ...rows].join(
    '\n',
  );
}
