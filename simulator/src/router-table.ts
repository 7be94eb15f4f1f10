import { SESSION_STATES, type SessionState } from '@router-fleet/agent';

/**
 * Names ↔ small integer codes, in one place: a value of a fixed list stored in a `Uint8Array`
 * slot. The code of a name is its index in `names`.
 */
export interface CodeTable<N extends string> {
  readonly names: readonly N[];
  /** name → code. */
  readonly code: Readonly<Record<N, number>>;
  /** code → name; throws on a code outside the table (a bug: only `code` values are stored). */
  name(code: number): N;
}

export function codeTable<const N extends string>(names: readonly N[]): CodeTable<N> {
  if (names.length > 256) throw new Error(`a code table stored in a Uint8Array holds at most 256 names, not ${names.length}`);
  if (new Set(names).size !== names.length) throw new Error(`duplicate name in code table: ${names.join(', ')}`);
  const code = Object.freeze(Object.fromEntries(names.map((n, i) => [n, i]))) as Readonly<Record<N, number>>;
  return Object.freeze({
    names,
    code,
    name(c: number): N {
      const n = names[c];
      if (n === undefined) throw new Error(`code ${c} is not in the table (${names.join(', ')})`);
      return n;
    },
  });
}

/** The session states, coded in the agent's own order (`SESSION_STATES`). */
export const SESSION = codeTable(SESSION_STATES);

/**
 * A router's last admission decision. `none`: no decision yet; `rejected`: the server refused a
 * licence after the hello; `auth-failed`: the server refused the credential before any hello.
 */
export const ADMISSION = codeTable(['none', 'managed', 'unmanaged', 'rejected', 'auth-failed'] as const);
export type Admission = (typeof ADMISSION.names)[number];

/** Per-router yes/no facts, one bit each of the router's flag byte. */
export const RouterFlag = {
  /** An update is running (offered and not yet done). */
  UPDATE_ACTIVE: 1,
  /** The running update went through `rolling-back`. */
  ROLLED_BACK: 2,
  /** The agent was stopped to be started again (a graceful restart): its exit boots it again. */
  RESTART_PENDING: 4,
  /** Its first connect is in flight (counted in the ramp's window). */
  IN_FLIGHT: 8,
} as const;
export type RouterFlag = (typeof RouterFlag)[keyof typeof RouterFlag];

/**
 * Per-router state as struct-of-arrays: one typed array per field, indexed by the router's local
 * number, fixed at `size` routers. About 80 bytes a router and no object per router, which is
 * what lets one process hold tens of thousands of them (an object with the same fields would
 * cost several times that on the heap, and every field a GC edge).
 *
 * Times are epoch ms with sub-millisecond resolution; 0 means "not yet" / "none".
 */
export class RouterTable {
  readonly size: number;
  readonly #state: Uint8Array;
  readonly #admission: Uint8Array;
  readonly #flags: Uint8Array;
  /** Start of the current run of `connecting` (the agent retries failed dials inside it). */
  readonly dialAt: Float64Array;
  /** When the current session's hello was sent. */
  readonly helloAt: Float64Array;
  readonly firstHelloAt: Float64Array;
  readonly firstAdmissionAt: Float64Array;
  /** When the hello that got the first admission decision was sent. */
  readonly decidedHelloAt: Float64Array;
  /** When the router lost its channel (0: it has it, or never had one). */
  readonly downAt: Float64Array;
  readonly lastReconnectMs: Float64Array;
  readonly lastRedialMs: Float64Array;
  /** Start of each router's latest dial attempt (the agent retries failed dials inside 'connecting'). */
  readonly attemptAt: Float64Array;
  readonly reconnects: Uint32Array;

  constructor(size: number) {
    this.size = size;
    this.#state = new Uint8Array(size);
    this.#admission = new Uint8Array(size);
    this.#flags = new Uint8Array(size);
    this.dialAt = new Float64Array(size);
    this.helloAt = new Float64Array(size);
    this.firstHelloAt = new Float64Array(size);
    this.firstAdmissionAt = new Float64Array(size);
    this.downAt = new Float64Array(size);
    this.lastReconnectMs = new Float64Array(size);
    this.lastRedialMs = new Float64Array(size);
    this.attemptAt = new Float64Array(size);
    this.decidedHelloAt = new Float64Array(size);
    this.reconnects = new Uint32Array(size);
  }

  /** The router's session state (`starting` until its agent reported one). */
  state(j: number): SessionState {
    return SESSION.name(this.#state[j]!);
  }

  stateCode(j: number): number {
    return this.#state[j]!;
  }

  setState(j: number, state: SessionState): void {
    this.#state[j] = SESSION.code[state];
  }

  admission(j: number): Admission {
    return ADMISSION.name(this.#admission[j]!);
  }

  admissionCode(j: number): number {
    return this.#admission[j]!;
  }

  setAdmission(j: number, admission: Admission): void {
    this.#admission[j] = ADMISSION.code[admission];
  }

  has(j: number, flag: RouterFlag): boolean {
    return (this.#flags[j]! & flag) !== 0;
  }

  set(j: number, flag: RouterFlag): void {
    this.#flags[j] = this.#flags[j]! | flag;
  }

  clear(j: number, flag: RouterFlag): void {
    this.#flags[j] = this.#flags[j]! & ~flag;
  }

  /** Clears the flag; whether it was set. */
  take(j: number, flag: RouterFlag): boolean {
    const had = this.has(j, flag);
    if (had) this.clear(j, flag);
    return had;
  }
}
