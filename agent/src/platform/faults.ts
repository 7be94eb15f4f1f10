/**
 * Fault-injection vocabulary shared by the emulated and memory platforms, the agent tests and the
 * fleet simulator. A production platform has no faults (`{}`).
 *
 * Fault points name a place in the agent: `update:<state>` fires right after the journal recorded
 * that state (before its handler runs), `install:<index>` before section `index` (0-based) is
 * installed, `install:<index>:after` after it was installed and recorded, `download:partial` when
 * a first partial download offset was made durable, `update:done` when the result was journaled
 * but not yet queued for reporting.
 */
export interface Faults {
  /** Download link faults, on the device side: the platform wraps the download source (`faultyDownloadSource`). */
  download?: {
    /** Abort the response after this many body bytes (the first `cutTimes` responses, default 1). */
    cutAfterBytes?: number;
    cutTimes?: number;
    /** Throttle the link to this many bytes per second (a slow link). */
    bytesPerSec?: number;
    /** Fail this many download attempts before they send a request (network unreachable). */
    failAttempts?: number;
  };
  /** Install faults: the platform wraps every installer (`faultyInstaller`). */
  install?: {
    /** Fail the install of the section with this index (0-based) or FILETYPE. */
    failSection?: number | string;
    /** Never finish installing this section (index or FILETYPE). */
    hangSection?: number | string;
    /** Every section install takes this much longer (ms): slow flash, big containers. */
    delayMs?: number;
  };
  /** The updated device cannot reach its server while it runs the uncommitted update. */
  healthCheck?: { fail?: boolean };
  reboot?: {
    /** How long the device is away during a reboot (ms). Default 0. */
    durationMs?: number;
    /** The new firmware does not boot: the boot loader falls back to the committed slot. */
    bootFails?: boolean;
  };
  connection?: {
    /** Refuse every connection attempt (link down). */
    refuse?: boolean;
    /** Drop an established connection after this many ms (flapping link). */
    dropAfterMs?: number;
  };
  /** Lose power (SIGKILL on disk) at a fault point, once. */
  powerCutAt?: FaultPoint;
  /** Stop making progress at a fault point, once (the process stays alive until killed or stopped). */
  hangAt?: FaultPoint;
  /** Offset added to the device's wall clock (ms). */
  clockSkewMs?: number;
}

/** A fault point, e.g. `update:installing`, `install:1`, `install:0:after`, `download:partial`. */
export type FaultPoint = string;

/** The names of every fault option, for the CLI's `--fault key=value` and the simulator. */
export const FAULT_OPTIONS = [
  'download.cutAfterBytes',
  'download.cutTimes',
  'download.bytesPerSec',
  'download.failAttempts',
  'install.failSection',
  'install.hangSection',
  'install.delayMs',
  'healthCheck.fail',
  'reboot.durationMs',
  'reboot.bootFails',
  'connection.refuse',
  'connection.dropAfterMs',
  'powerCutAt',
  'hangAt',
  'clockSkewMs',
] as const;

/**
 * Parses `key=value` pairs (keys from FAULT_OPTIONS) into Faults. Numbers and booleans are
 * converted; `install.failSection` stays a string unless it is a number. Throws a TypeError on an
 * unknown key.
 */
export function parseFaults(pairs: readonly string[]): Faults {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    const raw = eq < 0 ? 'true' : pair.slice(eq + 1);
    if (!(FAULT_OPTIONS as readonly string[]).includes(key)) throw new TypeError(`unknown fault "${key}"`);
    const value: unknown = raw === 'true' ? true : raw === 'false' ? false : /^-?\d+$/.test(raw) ? Number(raw) : raw;
    const parts = key.split('.');
    if (parts.length === 1) out[key] = value;
    else {
      const group = (out[parts[0]!] ?? {}) as Record<string, unknown>;
      group[parts[1]!] = value;
      out[parts[0]!] = group;
    }
  }
  return out as Faults;
}

/** Whether a section (index, FILETYPE) matches a fault selector. */
export function sectionMatches(selector: number | string | undefined, index: number, fileType: string): boolean {
  if (selector === undefined) return false;
  return typeof selector === 'number' ? selector === index : selector === fileType || selector === String(index);
}

/** Thrown (memory platform) or simulated by SIGKILL (emulated) when power is lost. */
export class PowerCut extends Error {
  override readonly name = 'PowerCut';
  constructor(point: string) {
    super(`power cut at ${point}`);
  }
}

/**
 * Fires the point faults. Each of `powerCutAt` and `hangAt` fires once per injector (the memory
 * platform keeps its injector across simulated reboots; the emulated CLI gets its faults per run).
 */
export class FaultInjector {
  readonly faults: Faults;
  #fired: Set<string> | undefined;
  readonly #powerCut: () => never;

  constructor(faults: Faults, powerCut: () => never) {
    this.faults = faults;
    this.#powerCut = powerCut;
  }

  /** Reached a fault point: cut power or hang there if asked to. */
  #firedSet(): Set<string> {
    this.#fired ??= new Set();
    return this.#fired;
  }

  async point(point: FaultPoint, signal?: AbortSignal): Promise<void> {
    if (this.faults.powerCutAt === point && !this.#fired?.has(`cut:${point}`)) {
      this.#firedSet().add(`cut:${point}`);
      this.#powerCut();
    }
    if (this.faults.hangAt === point && !this.#fired?.has(`hang:${point}`)) {
      this.#firedSet().add(`hang:${point}`);
      await new Promise<void>((resolve) => signal?.addEventListener('abort', () => resolve(), { once: true }));
    }
  }

  /** Whether a one-shot fault keyed `key` may still fire `times` times; counts one use. */
  take(key: string, times: number): boolean {
    const fired = this.#firedSet();
    let used = 0;
    while (fired.has(`${key}#${used}`)) used++;
    if (used >= times) return false;
    fired.add(`${key}#${used}`);
    return true;
  }
}
