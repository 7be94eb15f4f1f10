export type { LeaseFacts, LeaseState, RejectReason } from './admission/decide.js';
export type { PresenceTracker } from './admission/presence.js';
export { AdmissionService, type AdmissionOptions } from './admission/service.js';
export type {
  AdmissionChange,
  AdmissionEventMap,
  AdmissionOutcome,
  AdmitRequest,
  AdmitResult,
  DeniedReason,
  SweepReport,
} from './admission/types.js';
export { type BuildAppDeps, buildApp } from './app.js';
export { type Clock, systemClock, TestClock } from './clock.js';
export { type ConfigSources, configTable, configTableMarkdown, envName, loadConfig, type ServerConfig } from './config.js';
export { AppError, type ServerErrorCode, ServerErrors } from './errors.js';
export { type MainOptions, main, type RunningServer } from './main.js';
export { type AppDeps, createServices, type Services } from './services.js';
export type { BrokerAccounts } from './channel/mqtt/broker-accounts.js';
export {
  type BrokerAccountsErrorCode,
  BrokerAccountsError,
  type BrokerCommandFailure,
  DynsecAccounts,
  type DynsecCommand,
  type DynsecOptions,
  type DynsecResponse,
} from './channel/mqtt/dynsec.js';
export {
  channelDynsecFile,
  deviceClient,
  deviceRole,
  deviceRoleName,
  dynsecFile,
  SERVER_ACCOUNT,
  serverClient,
  serverRole,
} from './channel/mqtt/mosquitto-files.js';
export {
  BROKER_ACCOUNT_FAILURES,
  BROKER_ACCOUNT_RECONCILED,
  type BrokerAccountsHandle,
  startBrokerAccounts,
  type StartBrokerAccountsOptions,
} from './channel/mqtt/start-broker-accounts.js';
