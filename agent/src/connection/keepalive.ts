import type { Clock, Timer } from '../platform/platform.js';

export interface KeepaliveParams {
  pingIntervalSec: number;
  pongTimeoutSec: number;
}

/**
 * Application-level keep-alive: when nothing was heard for `pingIntervalSec`, send a ping; when
 * nothing is heard within `pongTimeoutSec` after it, the link is dead (half-open) → `onDead`. Any
 * inbound frame counts as life. One timer, re-armed lazily (not on every frame).
 */
export class Keepalive {
  readonly #clock: Clock;
  readonly #sendPing: () => void;
  readonly #onDead: () => void;
  #params: KeepaliveParams;
  #lastHeard: number;
  #pingSentAt: number | undefined;
  #timer: Timer | undefined;
  #stopped = false;

  constructor(clock: Clock, params: KeepaliveParams, sendPing: () => void, onDead: () => void) {
    this.#clock = clock;
    this.#params = params;
    this.#sendPing = sendPing;
    this.#onDead = onDead;
    this.#lastHeard = clock.now();
    this.#arm(params.pingIntervalSec * 1000);
  }

  /** Something arrived from the peer. */
  heard(): void {
    this.#lastHeard = this.#clock.now();
    if (this.#pingSentAt !== undefined) {
      this.#pingSentAt = undefined;
      this.#arm(this.#params.pingIntervalSec * 1000);
    }
  }

  update(params: KeepaliveParams): void {
    this.#params = params;
    if (this.#pingSentAt === undefined) this.#arm(Math.max(0, this.#lastHeard + params.pingIntervalSec * 1000 - this.#clock.now()));
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #arm(ms: number): void {
    if (this.#stopped) return;
    this.#timer?.cancel();
    this.#timer = this.#clock.setTimer(ms, () => this.#fire());
  }

  #fire(): void {
    this.#timer = undefined;
    if (this.#stopped) return;
    const now = this.#clock.now();
    if (this.#pingSentAt !== undefined) {
      // The pong deadline passed with nothing heard since the ping.
      this.stop();
      this.#onDead();
      return;
    }
    const idle = now - this.#lastHeard;
    const interval = this.#params.pingIntervalSec * 1000;
    if (idle < interval) {
      this.#arm(interval - idle);
      return;
    }
    this.#pingSentAt = now;
    this.#sendPing();
    this.#arm(this.#params.pongTimeoutSec * 1000);
  }
}
