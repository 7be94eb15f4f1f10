import type { ChannelConnection } from '@router-fleet/agent';
import { describe, expect, it } from 'vitest';
import { BurstHold } from '../src/burst-hold.js';
import { heldSends } from '../src/held-sends.js';

/** A channel that records what it was asked to do. */
function fakeLink() {
  const log: string[] = [];
  let open = true;
  const link: ChannelConnection & { log: string[]; drop(): void } = {
    log,
    onMessage: undefined,
    onClose: undefined,
    send(text) {
      if (!open) return false;
      log.push(`send ${text}`);
      return true;
    },
    close(code) {
      log.push(`close ${code}`);
      open = false;
    },
    drop() {
      open = false;
      link.onClose?.(1006, '');
    },
  };
  return link;
}

describe('heldSends: a router writes after a burst of offers', () => {
  it('writes at once when no offer was taken lately', () => {
    const inner = fakeLink();
    const channel = heldSends(inner, new BurstHold(60_000, 60_000));
    expect(channel.send('a')).toBe(true);
    expect(inner.log).toEqual(['send a']);
  });

  it('holds writes while offers keep coming, then writes them in the order sent once the offers stop', async () => {
    const turns = new BurstHold(100, 10_000);
    const inner = fakeLink();
    const other = fakeLink();
    const channel = heldSends(inner, turns);
    const second = heldSends(other, turns);
    turns.offered();
    expect(channel.send('a')).toBe(true);
    expect(second.send('x')).toBe(true);
    expect(channel.send('b')).toBe(true);
    expect(inner.log).toEqual([]);
    const released = new Promise<void>((resolve) => turns.hold(resolve));
    await released;
    expect(inner.log).toEqual(['send a', 'send b']);
    expect(other.log).toEqual(['send x']);
    // The burst is over: the next write goes at once.
    expect(channel.send('c')).toBe(true);
    expect(inner.log).toEqual(['send a', 'send b', 'send c']);
  });

  it('writes what it holds before it closes, and takes nothing after the link closed', () => {
    const turns = new BurstHold(60_000, 60_000);
    turns.offered();
    const inner = fakeLink();
    const channel = heldSends(inner, turns);
    channel.send('a');
    channel.close(1000);
    expect(inner.log).toEqual(['send a', 'close 1000']);
    expect(channel.send('b')).toBe(false);

    const dropped = fakeLink();
    const link = heldSends(dropped, turns);
    const closes: number[] = [];
    link.onClose = (code) => closes.push(code);
    link.send('held');
    dropped.drop();
    expect(closes).toEqual([1006]);
    expect(link.send('after')).toBe(false);
    expect(dropped.log).toEqual([]);
  });

  it('hands the link\'s messages to the listener the session sets', () => {
    const inner = fakeLink();
    const channel = heldSends(inner, new BurstHold());
    const got: string[] = [];
    channel.onMessage = (data) => got.push(data);
    inner.onMessage?.('hello');
    expect(got).toEqual(['hello']);
  });
});
