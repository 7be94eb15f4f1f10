/**
 * What the update-job pages share: the shapes of a job and of its device rows as the REST API and
 * the live stream send them, the state badge and the progress bar.
 */
import type { TFunction } from 'i18next';
import { useT } from '../i18n.js';

export type JobState = 'running' | 'paused' | 'finished' | 'cancelled' | 'aborted';

export const TERMINAL_JOB_STATES: readonly JobState[] = ['finished', 'cancelled', 'aborted'];

/** Which user actions each state allows (the server's job lifecycle table). */
export const JOB_ACTIONS: Readonly<Record<JobState, ReadonlyArray<'pause' | 'resume' | 'cancel'>>> = {
  running: ['pause', 'cancel'],
  paused: ['resume', 'cancel'],
  finished: [],
  cancelled: [],
  aborted: [],
};

/** Terminal results of an execution, in the order the page shows them. */
export const RESULTS = ['succeeded', 'failed', 'rejected', 'cancelled', 'timed-out'] as const;

export interface JobProgress {
  devices: { total: number; pending: number; skipped: number; active: number; done: number };
  results: Record<string, number>;
  /** Executions under way, by execution state. */
  inFlight: Record<string, number>;
  percentComplete: number;
  ratePerMinute: number;
  ignoredProgress: number;
}

/** Options as the server stored them (normalized). */
export interface StoredJobOptions {
  maxConcurrent: number | null;
  maxPerMinute: number | null;
  waves: number[];
  rebootTimeoutSec: number;
  abort: { failurePercent: number; minFailures: number } | null;
  timeoutSec: number;
  retries: number;
  retryDelaySec: number;
  window: { start: string; end: string } | { days: string[]; startTime: string; endTime: string; timeZone: 'UTC' } | null;
  allowDowngrade: boolean;
  dynamic: boolean;
}

export interface Job {
  uuid: string;
  name: string;
  state: JobState;
  packetUuid: string | null;
  firmwareVersion: string | null;
  templateUuid: string | null;
  target: { all: boolean; groupUuids: string[]; deviceCount: number };
  options: StoredJobOptions;
  system: boolean;
  abortReason: string | null;
  createdAt: string;
  finishedAt: string | null;
  progress: JobProgress;
}

/** The stream's `job` message: state and progress of the job watched. */
export interface JobLiveMessage {
  uuid: string;
  state: JobState;
  finishedAt: string | null;
  abortReason: string | null;
  progress: JobProgress;
}

/** One row of a job's device list (GET /api/jobs/{uuid}/devices and the stream's `devices`). */
export interface JobDeviceRow {
  deviceUuid: string;
  serialNumber: string;
  name: string;
  status: 'pending' | 'skipped' | 'active' | 'done';
  result: string | null;
  attempts: number;
  executionId: string | null;
  state: string | null;
  percent: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  cancelRequested: boolean;
  updatedAt: string | null;
}

export type { Page } from './paged-table.js';

/** Key of an execution state or result in fleet:execution (`timed-out` → `timed_out`). */
export const executionKey = (state: string) => `fleet:execution.${state.replace(/-/g, '_')}`;

export function JobStateBadge(props: { state: JobState }) {
  const t = useT('fleet');
  return (
    <span class={`badge job-state-${props.state}`} data-testid="job-state" data-state={props.state}>
      {t(`jobState.${props.state}`)}
    </span>
  );
}

/** Percent complete as a native progress bar (no inline style: the CSP forbids it) and a number. */
export function ProgressBar(props: { percent: number; label: string }) {
  const pct = Math.max(0, Math.min(100, props.percent));
  const text = `${new Intl.NumberFormat(document.documentElement.lang || 'en', { maximumFractionDigits: 1 }).format(pct)} %`;
  return (
    <span class="job-progress">
      <progress max={100} value={pct} aria-label={props.label} />
      <span class="job-percent" data-testid="job-percent">
        {text}
      </span>
    </span>
  );
}

/** "All devices", "2 groups", "1 device", "1 group and 3 devices". */
export function targetText(t: TFunction, target: Job['target']): string {
  if (target.all) return t('jobs:target.all');
  const parts: string[] = [];
  if (target.groupUuids.length > 0) parts.push(t('jobs:target.groups', { count: target.groupUuids.length }));
  if (target.deviceCount > 0) parts.push(t('jobs:target.devices', { count: target.deviceCount }));
  return parts.length === 0 ? t('jobs:target.none') : parts.join(t('jobs:target.and'));
}

/** What the job installs: the packet's name (when known), a vendor firmware version or a template. */
export function sourceText(t: TFunction, job: Job, packetName?: string): string {
  if (job.packetUuid !== null) return packetName ?? t('jobs:source.packet');
  if (job.firmwareVersion !== null) return t('jobs:source.firmware', { version: job.firmwareVersion });
  if (job.templateUuid !== null) return t('jobs:source.template');
  return '';
}
