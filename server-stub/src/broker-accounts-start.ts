import type { Logger } from 'pino';
import type { BrokerAccounts } from './channel/mqtt/broker-accounts.js';
import type { ServerConfig } from './config.js';
import type { Services } from './services.js';

/**
 * Starts the broker device accounts at an external Mosquitto (dynamic security): called once, by
 * the process that owns the broker's accounts (standalone server or cluster primary), when
 * `mqttUrl` and the admin credentials are configured. The implementation lives with the broker
 * accounts (`channel/mqtt/`); the server start takes it as a parameter.
 */
export type BrokerAccountsFactory = (input: {
  readonly config: ServerConfig;
  readonly services: Services;
  readonly log: Logger;
}) => Promise<BrokerAccounts>;

/** Starts the broker accounts when configured and a factory is given; undefined otherwise. */
export async function startBrokerAccounts(
  config: ServerConfig,
  services: Services,
  log: Logger,
  factory: BrokerAccountsFactory | undefined,
): Promise<BrokerAccounts | undefined> {
  if (!factory || config.mqttUrl === null || config.mqttAdminUsername === null || config.mqttAdminPassword === null) return undefined;
  return factory({ config, services, log });
}
