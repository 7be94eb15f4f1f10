/**
 * Waiting for a positive signal in tests of every package (protocol is the one package they all
 * depend on, so its test helpers are the shared place).
 *
 * A test that checks that something did NOT happen first waits with this for a signal that the work
 * in question is done (a log line, a reply, a counter), then asserts; a fixed sleep instead passes
 * whenever the machine is slow enough, so such a test cannot fail.
 */

/**
 * Default deadline: generous for a loaded machine (two suites at once on 2 cores) and still below
 * vitest's 30 s test timeout, so the error names what was awaited instead of "test timed out".
 */
export const WAIT_TIMEOUT_MS = 20_000;

export interface WaitOptions {
  /** Milliseconds before giving up (default {@link WAIT_TIMEOUT_MS}). */
  timeout?: number;
  /** What is awaited, for the error message (a function is called on timeout, e.g. to show the last value seen). */
  what?: string | (() => string);
  /** Milliseconds between two checks (default 10). */
  interval?: number;
}

/**
 * Calls `predicate` until it returns a value other than `undefined`, `null` or `false` and returns
 * that value; throws with `what` after `timeout` ms. A predicate that throws is retried (its last
 * error is reported on timeout).
 */
export async function waitFor<T>(
  predicate: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  { timeout = WAIT_TIMEOUT_MS, what = 'condition', interval = 10 }: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeout;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError === undefined ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`timed out after ${timeout} ms waiting for ${typeof what === 'function' ? what() : what}${cause}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}
