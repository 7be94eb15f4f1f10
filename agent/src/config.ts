import {
  type ConfigInput as SharedConfigInput,
  loadConfigTable,
  optionEnvName,
  optionFlagName,
  type OptionSpec as SharedOptionSpec,
  readConfigFile,
} from '@router-fleet/protocol/config';
import { AgentError } from './errors.js';

/**
 * The agent's one configuration table. Each option is read from, in order of precedence, command
 * line flags (`--boot-delay-max-sec 0`), the environment (`FLEET_AGENT_BOOT_DELAY_MAX_SEC=0`), a JSON
 * file (`--config FILE`) and the default. The result is validated once and frozen, then passed in;
 * nothing reads configuration at import time. The loader and its parsing rules are protocol's
 * (`@router-fleet/protocol/config`), shared with the server.
 */
export interface AgentConfig {
  readonly dataDir: string;
  readonly platform: 'emulated' | 'memory';
  readonly logLevel: string;
  readonly bootDelayMaxSec: number;
  readonly connectTimeoutSec: number;
  readonly helloTimeoutSec: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly stableSessionSec: number;
  readonly authBackoffMinSec: number;
  readonly authBackoffMaxSec: number;
  readonly rejectedDefaultWaitSec: number;
  readonly allowInsecureTransport: boolean;
  readonly requireSignatures: boolean;
  readonly maxPacketBytes: number;
  readonly stagingReserveBytes: number;
  readonly downloadRetries: number;
  readonly downloadRetryBaseMs: number;
  readonly downloadStallSec: number;
  readonly downloadMinBytesPerSec: number;
  readonly downloadSyncBytes: number;
  readonly healthCheckTimeoutSec: number;
  readonly maxTransitions: number;
  readonly maxResumes: number;
  readonly jobQueueMax: number;
  readonly historyMax: number;
  readonly reportResendSec: number;
  readonly statusIntervalSec: number;
  readonly outboxMaxEvents: number;
  readonly analyticsSampleSec: number;
  readonly analyticsBatchSize: number;
  readonly emulatedModel: string;
  readonly emulatedSerialNumber: string | null;
  readonly emulatedFirmwareVersion: string;
  readonly stagingQuotaBytes: number | null;
  readonly serverUrl: string | null;
  readonly caCertFile: string | null;
  readonly trustAnchorFiles: string | null;
  readonly deviceId: string | null;
  readonly serialNumber: string | null;
  readonly credentialFile: string | null;
  readonly supervise: boolean;
  readonly stopTimeoutSec: number;
}

/** One row of the agent's configuration table (the shared loader's row, named by this config's keys). */
export type OptionSpec = SharedOptionSpec<keyof AgentConfig>;

const MiB = 1024 * 1024;

export const CONFIG_TABLE: readonly OptionSpec[] = [
  { name: 'dataDir', type: 'string', default: undefined, unit: 'path', description: 'Data directory: connection profile, journal, outbox, staging and (emulated) device.' },
  { name: 'platform', type: 'string', default: 'emulated', unit: 'name', choices: ['emulated', 'memory'], description: 'Platform implementation: an emulated router on disk, or in memory (nothing persists across processes).' },
  { name: 'logLevel', type: 'string', default: 'info', unit: 'level', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], description: 'pino log level.' },
  { name: 'bootDelayMaxSec', type: 'integer', default: 30, unit: 's', min: 0, max: 3600, description: 'Upper bound of the random delay before the first connection after start (against reconnect storms after a power cut).' },
  { name: 'connectTimeoutSec', type: 'integer', default: 20, unit: 's', min: 1, max: 600, description: 'Longest TCP + TLS + WebSocket handshake (MQTT: up to the PUBACK of the online presence).' },
  { name: 'helloTimeoutSec', type: 'integer', default: 30, unit: 's', min: 1, max: 600, description: 'Longest wait for welcome after hello.' },
  { name: 'backoffBaseMs', type: 'integer', default: 1000, unit: 'ms', min: 1, description: 'Reconnect backoff: the first ceiling; each failure doubles it (full jitter: uniform in [0, ceiling]).' },
  { name: 'backoffMaxMs', type: 'integer', default: 300_000, unit: 'ms', min: 1, description: 'Reconnect backoff: the largest ceiling.' },
  { name: 'stableSessionSec', type: 'integer', default: 60, unit: 's', min: 0, description: 'A session that lasted this long resets the reconnect backoff.' },
  { name: 'authBackoffMinSec', type: 'integer', default: 600, unit: 's', min: 1, description: 'Wait after the credential was refused (close 4003): lower bound (grows, full jitter above it).' },
  { name: 'authBackoffMaxSec', type: 'integer', default: 21_600, unit: 's', min: 1, description: 'Wait after the credential was refused: upper bound.' },
  { name: 'rejectedDefaultWaitSec', type: 'integer', default: 300, unit: 's', min: 1, description: 'Wait after an admission rejection that carried no retryAfterSec.' },
  { name: 'allowInsecureTransport', type: 'boolean', default: false, unit: 'flag', description: 'Allow ws://, mqtt:// and http:// (development only; TLS is the default and the only production setting).' },
  { name: 'requireSignatures', type: 'boolean', default: true, unit: 'flag', description: 'Refuse unsigned packets (signatures checked against the profile’s trust anchors).' },
  { name: 'maxPacketBytes', type: 'integer', default: 1024 * MiB, unit: 'bytes', min: 1024, description: 'Largest packet the device accepts.' },
  { name: 'stagingReserveBytes', type: 'integer', default: 8 * MiB, unit: 'bytes', min: 0, description: 'Free space kept in reserve when staging a packet (packet + extracted payload + reserve must fit).' },
  { name: 'downloadRetries', type: 'integer', default: 8, unit: 'retries', min: 0, max: 1000, description: 'Retries of a failed download attempt (resumed with Range) before the job fails.' },
  { name: 'downloadRetryBaseMs', type: 'integer', default: 2000, unit: 'ms', min: 0, description: 'Download retry backoff: first ceiling (doubles per retry, full jitter, capped at 5 min).' },
  { name: 'downloadStallSec', type: 'integer', default: 60, unit: 's', min: 1, description: 'Stall watchdog window: an attempt that receives fewer than downloadMinBytesPerSec × window bytes in a window is aborted.' },
  { name: 'downloadMinBytesPerSec', type: 'integer', default: 256, unit: 'bytes/s', min: 1, description: 'Stall watchdog: least acceptable throughput.' },
  { name: 'downloadSyncBytes', type: 'integer', default: 1 * MiB, unit: 'bytes', min: 1, description: 'fsync the staged packet and persist the resume offset every this many bytes.' },
  { name: 'healthCheckTimeoutSec', type: 'integer', default: 300, unit: 's', min: 1, description: 'After an install or reboot, the device must be back online and managed within this time (or authenticated by the server and told it has no seat) or it rolls back.' },
  { name: 'maxTransitions', type: 'integer', default: 64, unit: 'transitions', min: 8, description: 'Loop breaker: most update transitions of one job.' },
  { name: 'maxResumes', type: 'integer', default: 6, unit: 'restarts', min: 1, description: 'Loop breaker: most agent restarts (reboots, crashes) during one job before it is rolled back and failed.' },
  { name: 'jobQueueMax', type: 'integer', default: 8, unit: 'jobs', min: 1, description: 'Offers queued while another job runs; more are refused.' },
  { name: 'historyMax', type: 'integer', default: 64, unit: 'jobs', min: 1, description: 'Finished executions remembered (duplicate offers are answered from here).' },
  { name: 'reportResendSec', type: 'integer', default: 30, unit: 's', min: 1, description: 'Resend an unacknowledged terminal job report after this long (and after every reconnect).' },
  { name: 'statusIntervalSec', type: 'integer', default: 900, unit: 's', min: 10, description: 'Periodic status report interval (also sent on connect and on change).' },
  { name: 'outboxMaxEvents', type: 'integer', default: 1000, unit: 'events', min: 10, description: 'Bound of the persistent event outbox; the oldest events are dropped beyond it.' },
  { name: 'analyticsSampleSec', type: 'integer', default: 3600, unit: 's', min: 1, max: 604_800, description: 'Analytics sample period (only with the account’s consent).' },
  { name: 'analyticsBatchSize', type: 'integer', default: 6, unit: 'samples', min: 1, max: 100, description: 'Analytics samples sent per message.' },
  { name: 'emulatedModel', type: 'string', default: 'EMU-1', unit: 'name', description: 'Emulated platform: router model on first power-on.' },
  { name: 'emulatedSerialNumber', type: 'string', default: null, unit: 'text', description: 'Emulated platform: serial number on first power-on (default: the profile’s).' },
  { name: 'emulatedFirmwareVersion', type: 'string', default: '1.0.0', unit: 'version', description: 'Emulated platform: firmware version in slot a on first power-on.' },
  { name: 'stagingQuotaBytes', type: 'integer', default: null, unit: 'bytes', min: 1, description: 'Emulated platform: staging quota (default: free space of the file system).' },
  { name: 'serverUrl', type: 'string', default: null, unit: 'URL', description: 'Instead of a provisioned profile: control-channel URL, wss://… (WebSocket) or mqtts://… (MQTT 5 broker).' },
  { name: 'caCertFile', type: 'string', default: null, unit: 'path', description: 'Instead of a provisioned profile: PEM CA that verifies the server.' },
  { name: 'trustAnchorFiles', type: 'string', default: null, unit: 'paths', description: 'Instead of a provisioned profile: comma-separated PEM files of packet-signing trust anchors.' },
  { name: 'deviceId', type: 'string', default: null, unit: 'id', description: 'Instead of a provisioned profile: device id.' },
  { name: 'serialNumber', type: 'string', default: null, unit: 'text', description: 'Instead of a provisioned profile: serial number.' },
  { name: 'credentialFile', type: 'string', default: null, unit: 'path', description: 'Instead of a provisioned profile: file holding the device credential (never pass it as a flag).' },
  { name: 'supervise', type: 'boolean', default: true, unit: 'flag', description: '`run` supervises the agent in a child process and restarts it after an emulated reboot (exit 75).' },
  { name: 'stopTimeoutSec', type: 'integer', default: 20, unit: 's', min: 1, description: 'Longest graceful stop (SIGTERM) before the process exits anyway.' },
];

export type ConfigInput = SharedConfigInput<keyof AgentConfig>;

/** `bootDelayMaxSec` → `FLEET_AGENT_BOOT_DELAY_MAX_SEC`. */
export function envName(name: string): string {
  return optionEnvName('FLEET_AGENT', name);
}

/** `bootDelayMaxSec` → `boot-delay-max-sec`. */
export const flagName = optionFlagName;

export interface ConfigSources {
  flags?: ConfigInput;
  env?: Record<string, string | undefined>;
  file?: ConfigInput;
}

const configError = (message: string) => new AgentError('AGENT_CONFIG_INVALID', message);

function crossCheck(config: AgentConfig): string | undefined {
  if (config.backoffMaxMs < config.backoffBaseMs) return 'backoffMaxMs must be ≥ backoffBaseMs';
  if (config.authBackoffMaxSec < config.authBackoffMinSec) return 'authBackoffMaxSec must be ≥ authBackoffMinSec';
  return undefined;
}

/**
 * Resolves the configuration: flags > environment > file > defaults, by the shared loader's rules
 * (`@router-fleet/protocol/config`). Unknown keys in the file are refused (typos must not pass
 * silently). Throws AGENT_CONFIG_INVALID.
 */
export function loadConfig(sources: ConfigSources): AgentConfig {
  return loadConfigTable<AgentConfig>(CONFIG_TABLE, sources, { envPrefix: 'FLEET_AGENT', error: configError, check: crossCheck });
}

/** Reads a JSON configuration file (`--config FILE`). Throws AGENT_CONFIG_INVALID. */
export function readAgentConfigFile(path: string): ConfigInput {
  return readConfigFile(path, configError);
}

/** Defaults plus `overrides` (programmatic use: simulator, tests). */
export function resolveConfig(overrides: ConfigInput & { dataDir?: string } = {}): AgentConfig {
  return loadConfig({ flags: { dataDir: overrides.dataDir ?? '', ...overrides } });
}
