import type { SessionState } from '../lifecycle/session-table.js';
import type { Logger } from '../logger.js';
import type { Clock, Timer } from '../platform/platform.js';

/** Link lines a person may read before they are rate-limited (a flap or two in full). */
export const LINK_LOG_BURST = 6;
/** Then one link line per this period (ms); the lines held back are counted, the latest is kept. */
export const LINK_LOG_REFILL_MS = 60_000;

interface Line {
  fields: Record<string, unknown>;
  msg: string;
}

/**
 * The info lines that say whether the device is online: `control channel connected` (channel
 * open, hello sent), `managed by the server` / `connected, not managed` (the admission) and
 * `control channel lost` (an admitted channel ended). A flapping link would write them without
 * end, so they share a token bucket: LINK_LOG_BURST lines, then one per LINK_LOG_REFILL_MS. A line
 * held back is not dropped silently: the latest one is written when the next token is due, with
 * `suppressed` (how many were held back), so the last word in the log is always the link's state.
 */
export class LinkLog {
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #burst: number;
  readonly #refillMs: number;
  #tokens: number;
  #refilledAt: number;
  #suppressed = 0;
  #latest: Line | undefined;
  #timer: Timer | undefined;
  #connectedAt = 0;

  constructor(log: Logger, clock: Clock, options: { burst?: number; refillMs?: number } = {}) {
    this.#log = log;
    this.#clock = clock;
    this.#burst = options.burst ?? LINK_LOG_BURST;
    this.#refillMs = options.refillMs ?? LINK_LOG_REFILL_MS;
    this.#tokens = this.#burst;
    this.#refilledAt = clock.now();
  }

  /** Called on every session transition. */
  transition(from: SessionState, to: SessionState, context: { url?: string; close?: { code: number; reason: string } }): void {
    const now = this.#clock.now();
    if (from === 'connecting' && to === 'hello-sent') {
      this.#write({ fields: { url: context.url }, msg: 'control channel connected' });
    } else if (from === 'hello-sent' && (to === 'managed' || to === 'unmanaged')) {
      this.#connectedAt = now;
      this.#write({ fields: { admission: to }, msg: to === 'managed' ? 'managed by the server' : 'connected, not managed (no licence)' });
    } else if ((from === 'managed' || from === 'unmanaged') && to !== 'managed' && to !== 'unmanaged') {
      const close = context.close ? { code: context.close.code, reason: context.close.reason } : {};
      const fields: Record<string, unknown> = { afterSec: Math.round((now - this.#connectedAt) / 1000), ...close };
      this.#write({ fields, msg: to === 'stopped' ? 'control channel closed (stopping)' : 'control channel lost' });
    }
  }

  /** Stops the pending line (the session stopped). */
  close(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #refill(now: number): void {
    const earned = Math.floor((now - this.#refilledAt) / this.#refillMs);
    if (earned <= 0) return;
    this.#tokens = Math.min(this.#burst, this.#tokens + earned);
    this.#refilledAt = this.#tokens === this.#burst ? now : this.#refilledAt + earned * this.#refillMs;
  }

  #write(line: Line): void {
    this.#refill(this.#clock.now());
    if (this.#tokens > 0) {
      this.#tokens--;
      this.#emit(line);
      return;
    }
    this.#suppressed++;
    this.#latest = line;
    this.#log.debug(line.fields, `${line.msg} (rate-limited)`);
    if (!this.#timer) {
      const due = Math.max(0, this.#refilledAt + this.#refillMs - this.#clock.now());
      this.#timer = this.#clock.setTimer(due, () => {
        this.#timer = undefined;
        const latest = this.#latest;
        if (!latest) return;
        this.#refill(this.#clock.now());
        this.#tokens = Math.max(0, this.#tokens - 1);
        this.#emit(latest);
      });
    }
  }

  #emit(line: Line): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    this.#latest = undefined;
    this.#log.info(suppressed > 0 ? { ...line.fields, suppressed } : line.fields, line.msg);
  }
}
