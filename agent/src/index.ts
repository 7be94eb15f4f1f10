export { type Agent, type AgentExit, type AgentOptions, createAgent, type LifecycleTransition, type TransitionListener } from './agent.js';
export { type AgentConfig, CONFIG_TABLE, type ConfigInput, type ConfigSources, envName, flagName, loadConfig, type OptionSpec, resolveConfig } from './config.js';
export {
  CONNECTION_PROFILE_FILENAME,
  CONNECTION_PROFILE_FORMAT,
  type ConnectionProfile,
  parseConnectionProfile,
  type ProfileValidation,
  validateConnectionProfile,
} from './connection-profile.js';
export { Backoff } from './connection/backoff.js';
export { MemoryNetwork, type MemoryServerConnection } from './connection/memory-transport.js';
export { loadProfile, saveProfile } from './connection/profile-store.js';
export { DEFAULT_SESSION } from './connection/session.js';
export { createTransport } from './connection/create-transport.js';
// Types only: the MQTT module (and the `mqtt` package) loads on the first MQTT dial of createTransport.
export type { MqttOpenLink, MqttTransportObserver, MqttTransportOptions } from './connection/mqtt-transport.js';
export {
  type ChannelConnection,
  DialError,
  type DialOptions,
  type NetworkTransportOptions,
  type OpenLink,
  type Transport,
  type TransportObserver,
} from './connection/transport.js';
export { createWsTransport, type WsTransportObserver, type WsTransportOptions } from './connection/ws-transport.js';
export { AgentError, type AgentErrorCode, AgentErrorCodes, errorTableMarkdown, isAgentError } from './errors.js';
export type { InstallContext, Installer, ProfileStore } from './installers/installer.js';
export { loadUpdateCode } from './jobs/job-manager.js';
export { defaultInstallers } from './installers/registry.js';
export type { JobRecord, SectionRecord } from './lifecycle/journal.js';
export { renderLifecycleDoc, mermaidDiagram } from './lifecycle/mermaid.js';
export { SESSION_OUTCOMES, SESSION_STATES, SESSION_TABLE, type SessionOutcome, type SessionState } from './lifecycle/session-table.js';
export { nextState, tableProblems, type TransitionTable, transitions } from './lifecycle/table.js';
export { UPDATE_OUTCOMES, UPDATE_STATES, UPDATE_TABLE, type UpdateOutcome, type UpdateState } from './lifecycle/update-table.js';
export { createLogger, type Logger, silentLogger } from './logger.js';
export {
  createManualClock,
  createSharedClock,
  type ManualClock,
  seededRandom,
  skewedClock,
  sleep,
  systemClock,
  systemRandom,
} from './platform/clock.js';
export type { DeviceOptions } from './platform/device-model.js';
export { createEmulatedPlatform, type EmulatedPlatform, type EmulatedPlatformOptions, REBOOT_EXIT_CODE } from './platform/emulated.js';
export { FAULT_OPTIONS, FaultInjector, type FaultPoint, type Faults, PowerCut, parseFaults } from './platform/faults.js';
export { createMemoryPlatform, type MemoryPlatform, type MemoryPlatformOptions } from './platform/memory.js';
export type * from './platform/platform.js';
export { looksSensitive, sanitizeAnalytics } from './reporting/privacy.js';
export { AGENT_VERSION } from './version.js';
