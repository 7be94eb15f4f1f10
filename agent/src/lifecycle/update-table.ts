import type { JobExecutionState } from '@router-fleet/protocol';
import type { TransitionTable } from './table.js';

export const UPDATE_STATES = [
  'offered',
  'downloading',
  'verifying',
  'waiting',
  'installing',
  'rebooting',
  'health-check',
  'committing',
  'rolling-back',
  'done',
] as const;
export type UpdateState = (typeof UPDATE_STATES)[number];

/** What an update state handler may report. */
export const UPDATE_OUTCOMES = [
  'ok',
  'reboot',
  'wait',
  'already-installed',
  'failed',
  'rejected',
  'cancelled',
  'timed-out',
] as const;
export type UpdateOutcome = (typeof UPDATE_OUTCOMES)[number];

/** The update of one job execution. `installing` is the commit point. */
export const UPDATE_TABLE: TransitionTable<UpdateState, UpdateOutcome> = {
  name: 'update',
  states: UPDATE_STATES,
  outcomes: UPDATE_OUTCOMES,
  initial: 'offered',
  terminal: ['done'],
  rows: {
    offered: {
      ok: 'downloading',
      'already-installed': 'done',
      rejected: 'done',
      failed: 'done',
      cancelled: 'done',
      'timed-out': 'done',
    },
    downloading: { ok: 'verifying', rejected: 'done', failed: 'done', cancelled: 'done', 'timed-out': 'done' },
    verifying: {
      ok: 'installing',
      wait: 'waiting',
      'already-installed': 'done',
      rejected: 'done',
      failed: 'done',
      cancelled: 'done',
      'timed-out': 'done',
    },
    waiting: { ok: 'installing', failed: 'done', cancelled: 'done', 'timed-out': 'done' },
    installing: { ok: 'health-check', reboot: 'rebooting', failed: 'rolling-back' },
    rebooting: { ok: 'health-check', failed: 'rolling-back' },
    'health-check': { ok: 'committing', failed: 'rolling-back' },
    committing: { ok: 'done', failed: 'rolling-back' },
    'rolling-back': { ok: 'done', failed: 'done' },
    done: {},
  },
  describe: {
    offered: 'Offer accepted: deadline, size, free space and already-installed checks.',
    downloading: 'HTTPS download with Range resume, SHA-256 while writing, stall watchdog, bounded retries.',
    verifying: 'Signature against the device trust anchors, hashes, model, REQUIRED_SW, downgrade; sections pre-checked.',
    waiting: 'Verified; waiting for the install window.',
    installing: 'Commit point. Sections installed in MANIFEST order (journal before each side effect).',
    rebooting: 'Boot into the new firmware slot (one-shot trial boot).',
    'health-check': 'Back online and managed within the timeout (a fresh round trip to the server), or authenticated and told it has no seat (unmanaged, rejected for want of a licence).',
    committing: 'Make the update permanent (commit the slot, drop backups).',
    'rolling-back': 'Undo installed sections in reverse order (old slot, restored backups).',
    done: 'Terminal: result reported until the server acknowledges it.',
  },
};

/** The shared job state reported on entering an update state (`undefined`: keep the last one). */
export const REPORTED_JOB_STATE: { readonly [K in UpdateState]: JobExecutionState | undefined } = {
  offered: undefined,
  downloading: 'downloading',
  verifying: 'downloading',
  waiting: 'downloaded',
  installing: 'installing',
  rebooting: 'rebooting',
  'health-check': 'verifying',
  committing: 'verifying',
  'rolling-back': undefined,
  done: undefined,
};

/** States before the commit point: a cancel aborts cleanly. */
export const CANCELLABLE_UPDATE_STATES: readonly UpdateState[] = ['offered', 'downloading', 'verifying', 'waiting'];
