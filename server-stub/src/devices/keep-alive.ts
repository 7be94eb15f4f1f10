/** The keep-alive parameters the protocol carries (welcome.session, settings.session, profile keepAlive). */
export interface SessionParams {
  readonly pingIntervalSec: number;
  readonly pongTimeoutSec: number;
  readonly sessionTimeoutSec: number;
}

const clamp = (v: number, min: number, max: number) => Math.min(max, Math.max(min, Math.trunc(v)));

/**
 * A device's stored keep-alive settings as protocol session parameters. The API accepts up to a
 * day for each; the protocol carries at most an hour (and pings at least every 5 s), so values
 * outside are clamped rather than refused.
 */
export function sessionParams(row: { ping_interval: number; pong_timeout: number; session_timeout: number }): SessionParams {
  return {
    pingIntervalSec: clamp(row.ping_interval, 5, 3600),
    pongTimeoutSec: clamp(row.pong_timeout, 1, 3600),
    sessionTimeoutSec: clamp(row.session_timeout, 1, 3600),
  };
}
