import { type AccountRowId, type AccountUuid, asAccountRowId, asAccountUuid, asDeviceRowId, asDeviceUuid, type DeviceRowId, type DeviceUuid } from '../ids.js';
import { nextState } from '../state-table.js';
import type { SessionInfo } from './hub.js';
import { SESSION_STATES, SESSION_TABLE, type SessionOutcome, type SessionState } from './session-table.js';
import type { ChannelTransport, LinkEndCause } from './transport.js';

/**
 * One connection. Kept small: the server holds tens of thousands. No timers per session: the one
 * sweep (keep-alive.ts) reads `lastHeardAt`/`pingSentAt`/`closeBy`. Its state changes only through
 * {@link Sessions.move}, which checks the move against the session table.
 */
export class Session implements SessionInfo {
  #state: SessionState = SESSION_TABLE.initial;
  deviceUuid: DeviceUuid = asDeviceUuid('');
  deviceKey: DeviceRowId = asDeviceRowId(0);
  accountUuid: AccountUuid = asAccountUuid('');
  accountKey: AccountRowId = asAccountRowId(0);
  admission: 'managed' | 'unmanaged' = 'managed';
  connectedAt = 0;
  lastHeardAt: number;
  pingIntervalMs = 0;
  pongTimeoutMs = 0;
  /** When the ping awaiting its pong was sent (monotonic ms), or null when none is outstanding. */
  pingSentAt: number | null = null;
  /** In `closing`, `replaced`, `refusing`: when the sweep ends the link if its close has not finished. */
  closeBy = 0;
  badInRow = 0;
  /** `trustAnchorsDigest` the device last reported (hello, status); undefined for agents before 1.1. */
  anchorsDigest: string | undefined;
  /** Digest of the last `trust-anchors` sent on this session: each set is offered once per session. */
  anchorsSent: string | undefined;
  /** Why the link ended when the device did not end it (set when it ends). */
  endCause: LinkEndCause | undefined;

  constructor(
    readonly transport: ChannelTransport,
    readonly openedAt: number,
  ) {
    this.lastHeardAt = openedAt;
  }

  get state(): SessionState {
    return this.#state;
  }

  /** Only for {@link Sessions.move}. */
  apply(outcome: SessionOutcome): SessionState {
    this.#state = nextState(SESSION_TABLE, this.#state, outcome);
    return this.#state;
  }
}

/**
 * Every session of this process and the indexes derived from their states: by device (open,
 * closing), by account (open, closing) and a count per state. All state changes go through `move`.
 */
export class Sessions {
  /** Sessions whose transport has not ended. */
  readonly #live = new Set<Session>();
  readonly #byDevice = new Map<string, Session>();
  readonly #byAccount = new Map<string, Set<Session>>();
  readonly #count = new Map<SessionState, number>(SESSION_STATES.map((s) => [s, 0]));

  add(s: Session): void {
    this.#live.add(s);
    this.#bump(s.state, 1);
  }

  /** Moves `s` by `outcome` through the session table (throws IllegalTransition without a row). */
  move(s: Session, outcome: SessionOutcome): SessionState {
    const from = s.state;
    const to = s.apply(outcome);
    this.#bump(from, -1);
    this.#bump(to, 1);
    if (to === 'open') this.#index(s);
    else if (from === 'open' || from === 'closing') {
      if (to !== 'closing') this.#unindex(s);
    }
    if (to === 'closed') this.#live.delete(s);
    return to;
  }

  /** The device's admitted session (open or closing), if any. */
  ofDevice(deviceUuid: string): Session | undefined {
    return this.#byDevice.get(deviceUuid);
  }

  /** The device's session if it is open. */
  open(deviceUuid: string): Session | undefined {
    const s = this.#byDevice.get(deviceUuid);
    return s?.state === 'open' ? s : undefined;
  }

  ofAccount(accountUuid: string): Iterable<Session> {
    return this.#byAccount.get(accountUuid) ?? [];
  }

  /** Admitted sessions (open or closing). */
  admitted(): Iterable<Session> {
    return this.#byDevice.values();
  }

  /** Sessions whose transport has not ended, in every state. */
  live(): Iterable<Session> {
    return this.#live;
  }

  count(state: SessionState): number {
    return this.#count.get(state)!;
  }

  /** Admitted sessions (open or closing) in this process. */
  get admittedCount(): number {
    return this.#byDevice.size;
  }

  #bump(state: SessionState, by: number): void {
    this.#count.set(state, this.#count.get(state)! + by);
  }

  #index(s: Session): void {
    this.#byDevice.set(s.deviceUuid, s);
    let set = this.#byAccount.get(s.accountUuid);
    if (!set) this.#byAccount.set(s.accountUuid, (set = new Set()));
    set.add(s);
  }

  #unindex(s: Session): void {
    if (this.#byDevice.get(s.deviceUuid) === s) this.#byDevice.delete(s.deviceUuid);
    const set = this.#byAccount.get(s.accountUuid);
    if (set) {
      set.delete(s);
      if (set.size === 0) this.#byAccount.delete(s.accountUuid);
    }
  }
}
