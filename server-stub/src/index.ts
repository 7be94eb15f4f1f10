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
