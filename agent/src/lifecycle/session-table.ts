import type { TransitionTable } from './table.js';

export const SESSION_STATES = [
  'starting',
  'connecting',
  'hello-sent',
  'managed',
  'unmanaged',
  'rejected-waiting',
  'backing-off',
  'stopped',
] as const;
export type SessionState = (typeof SESSION_STATES)[number];

/** What a session state handler may report. */
export const SESSION_OUTCOMES = [
  'ready',
  'connected',
  'managed',
  'unmanaged',
  'rejected',
  'auth-failed',
  'closed',
  'stop',
] as const;
export type SessionOutcome = (typeof SESSION_OUTCOMES)[number];

/** The control-channel session. */
export const SESSION_TABLE: TransitionTable<SessionState, SessionOutcome> = {
  name: 'session',
  states: SESSION_STATES,
  outcomes: SESSION_OUTCOMES,
  initial: 'starting',
  terminal: ['stopped'],
  rows: {
    starting: { ready: 'connecting', stop: 'stopped' },
    connecting: { connected: 'hello-sent', 'auth-failed': 'rejected-waiting', stop: 'stopped' },
    'hello-sent': {
      managed: 'managed',
      unmanaged: 'unmanaged',
      rejected: 'rejected-waiting',
      'auth-failed': 'rejected-waiting',
      closed: 'backing-off',
      stop: 'stopped',
    },
    managed: {
      unmanaged: 'unmanaged',
      rejected: 'rejected-waiting',
      'auth-failed': 'rejected-waiting',
      closed: 'backing-off',
      stop: 'stopped',
    },
    unmanaged: {
      managed: 'managed',
      rejected: 'rejected-waiting',
      'auth-failed': 'rejected-waiting',
      closed: 'backing-off',
      stop: 'stopped',
    },
    'rejected-waiting': { ready: 'connecting', stop: 'stopped' },
    'backing-off': { ready: 'connecting', stop: 'stopped' },
    stopped: {},
  },
  describe: {
    starting: 'Random delay after boot (no reconnect storm after a power cut).',
    connecting: 'Dial the server (TLS, subprotocol); failed dials retried by p-retry with capped exponential backoff and full jitter.',
    'hello-sent': 'Sent hello; waiting for welcome (hello timeout).',
    managed: 'Holds a licence: gets jobs. Ping/pong with the server’s session parameters.',
    unmanaged: 'Connected and visible, no licence, no jobs.',
    'rejected-waiting': 'Rejected (waits retryAfterSec) or credential refused (long backoff).',
    'backing-off': 'Link lost: waits a full-jitter backoff before dialling again.',
    stopped: 'Agent stopped (SIGTERM, reboot).',
  },
};
