import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { ServerConfig } from './config.js';
import type { Services } from './services.js';

/** What the server start keeps of the broker accounts: something to close at shutdown. */
export interface BrokerAccountsRunning {
  close(): Promise<void>;
}

/**
 * Keeps the device accounts at an external Mosquitto (dynamic security) in step with this
 * process's registrations and deletions, when `mqttUrl` and the admin credentials are configured;
 * undefined otherwise. Every process that serves the REST API attaches (a registration is
 * provisioned by the process that took it); only one per cluster reconciles (`reconcile`: the
 * standalone server or the primary), since concurrent reconciles would disconnect each other's
 * fresh clients. The plugin client loads only when configured.
 */
export async function startBrokerAccounts(
  config: ServerConfig,
  services: Pick<Services, 'devices' | 'metrics'>,
  log: Logger,
  options: { reconcile: boolean },
): Promise<BrokerAccountsRunning | undefined> {
  if (config.mqttUrl === null || config.mqttAdminUsername === null || config.mqttAdminPassword === null) return undefined;
  const { startBrokerAccounts: start } = await import('./channel/mqtt/start-broker-accounts.js');
  return start({
    url: config.mqttUrl,
    adminUsername: config.mqttAdminUsername,
    adminPassword: config.mqttAdminPassword,
    ...(config.mqttCa !== null ? { caPem: readFileSync(config.mqttCa, 'utf8') } : {}),
    ...(config.mqttPassword !== null ? { serverAccount: { username: config.mqttUsername, password: config.mqttPassword } } : {}),
    devices: services.devices,
    metrics: services.metrics,
    logger: log,
    reconcileAtStart: options.reconcile,
  });
}
