import type { TransitionTable } from '../state-table.js';

/**
 * The states of one server-side control-channel session, one value per session (like ws's
 * `readyState`). What a session may do follows from its state alone: only `awaiting-hello` takes a
 * hello, only `open` is sent to and pinged, an admitted session is ingested from until its link
 * ends (`open`, `closing`, `replaced`: what the device sent before the close reached it is its
 * own), `refusing` takes nothing, and only the end of an `open` or `closing` session gives its
 * lease back.
 */
export const SESSION_STATES = ['awaiting-hello', 'admitting', 'open', 'replaced', 'closing', 'refusing', 'closed'] as const;
export type SessionState = (typeof SESSION_STATES)[number];

/** What happened to a session; the table alone picks the state that follows. */
export const SESSION_OUTCOMES = ['hello', 'admitted', 'refuse', 'close', 'replaced', 'shutdown', 'ended'] as const;
export type SessionOutcome = (typeof SESSION_OUTCOMES)[number];

export const SESSION_TABLE: TransitionTable<SessionState, SessionOutcome> = {
  name: 'channel session',
  states: SESSION_STATES,
  outcomes: SESSION_OUTCOMES,
  initial: 'awaiting-hello',
  terminal: ['closed'],
  rows: {
    'awaiting-hello': { hello: 'admitting', refuse: 'refusing', shutdown: 'refusing', ended: 'closed' },
    admitting: { admitted: 'open', refuse: 'refusing', shutdown: 'refusing', ended: 'closed' },
    open: { close: 'closing', replaced: 'replaced', shutdown: 'closed', ended: 'closed' },
    closing: { replaced: 'replaced', shutdown: 'closed', ended: 'closed' },
    replaced: { ended: 'closed' },
    refusing: { ended: 'closed' },
    closed: {},
  },
  describe: {
    'awaiting-hello': 'Transport connected; the first frame must be a hello (hello timeout, checked by the sweep).',
    admitting: 'The hello waits in the admission batch (one transaction per tick); further frames are ignored.',
    open: 'Admitted (managed or unmanaged): status, events and job messages are taken; pinged after a quiet interval.',
    closing: 'Closed by the server after it was open (pong timeout, bad input); frames still in flight are taken; its end releases the lease.',
    replaced: 'A newer connection of the same device was admitted; frames still in flight are taken; its end releases nothing.',
    refusing: 'Closed by the server before admission (hello timeout, bad first frame, auth failed, rejected, busy); takes no more frames.',
    closed: 'The transport has ended (or the server shut down and released the lease itself).',
  },
};
