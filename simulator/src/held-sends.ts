import type { ChannelConnection } from '@router-fleet/agent';
import type { BurstHold } from './burst-hold.js';

/**
 * The longest a write is held (ms, from the first one held). Longer than the downloads' longest
 * hold: writes released in the middle of a burst (all of a process's at once) would delay the
 * offers still to come, and a burst to a large fleet on a loaded machine lasted 6–9 s. Far below
 * the timeouts a held write could meet (hello → welcome 30 s, pong 104 s).
 */
export const SEND_HOLD_MAX_MS = 10_000;

/**
 * A router's channel whose writes wait, while a burst of offers is arriving at this process, until
 * the burst is over (as `turns` tells: no offer taken for its quiet time, or its longest hold), in
 * the order they were sent; at other times they go at once, as before. Nothing is dropped or
 * changed: a message the channel took (`send` returned true) goes out unless the link closes first,
 * as one in a socket's buffer would.
 *
 * Why: thousands of routers share this process's processor, where each has one of its own in the
 * field. A router's first write after taking its offer (the `downloading` report: a TLS `writev`
 * each, and the server's read of it) came before the next router's offer was read; in a profile of
 * the 20,000-router run it was the largest cost of a simulator process (1.25–2.0 s of ~7 s) while
 * the offers arrived, on a machine whose two cores the server's workers share.
 */
export function heldSends(inner: ChannelConnection, turns: Pick<BurstHold, 'holding' | 'hold'>): ChannelConnection {
  let queue: string[] | undefined;
  let closed = false;
  const flush = () => {
    const texts = queue;
    queue = undefined;
    if (!texts || closed) return;
    for (const text of texts) if (!inner.send(text)) return;
  };
  const outer: ChannelConnection = {
    get onMessage() {
      return inner.onMessage;
    },
    set onMessage(listener) {
      inner.onMessage = listener;
    },
    onClose: undefined,
    send(text) {
      if (closed) return false;
      if (queue) {
        queue.push(text);
        return true;
      }
      if (!turns.holding()) return inner.send(text);
      queue = [text];
      turns.hold(flush);
      return true;
    },
    close(code, reason) {
      // What the router sent before it closed goes first.
      flush();
      closed = true;
      inner.close(code, reason);
    },
  };
  inner.onClose = (code, reason) => {
    closed = true;
    queue = undefined;
    outer.onClose?.(code, reason);
  };
  return outer;
}
