import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { LinkLog } from '../src/connection/link-log.js';
import { createManualClock } from '../src/platform/clock.js';

function capture(level = 'debug') {
  const lines: Array<Record<string, unknown> & { level: number; msg: string }> = [];
  const log = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) });
  return { log, lines, info: () => lines.filter((l) => l.level === 30) };
}

describe('link log (connected / managed / lost at info level)', () => {
  it('writes one info line per link event on a stable link', () => {
    const clock = createManualClock();
    const { log, info } = capture();
    const link = new LinkLog(log, clock);
    link.transition('starting', 'connecting', {});
    link.transition('connecting', 'hello-sent', { url: 'wss://fleet.example.com/api/channel' });
    link.transition('hello-sent', 'managed', {});
    link.transition('managed', 'backing-off', { close: { code: 1006, reason: '' } });
    link.transition('backing-off', 'connecting', {});
    link.transition('connecting', 'hello-sent', { url: 'wss://fleet.example.com/api/channel' });
    link.transition('hello-sent', 'unmanaged', {});
    expect(info().map((l) => l.msg)).toEqual([
      'control channel connected',
      'managed by the server',
      'control channel lost',
      'control channel connected',
      'connected, not managed (no licence)',
    ]);
    expect(info()[0]).toMatchObject({ url: 'wss://fleet.example.com/api/channel' });
    expect(info()[2]).toMatchObject({ code: 1006, afterSec: 0 });
  });

  it('rate-limits a flapping link and still writes its latest state, with the count held back', async () => {
    const clock = createManualClock();
    const { log, lines, info } = capture();
    const link = new LinkLog(log, clock, { burst: 3, refillMs: 60_000 });
    for (let i = 0; i < 10; i++) {
      link.transition('connecting', 'hello-sent', { url: 'wss://x/api/channel' });
      link.transition('hello-sent', 'managed', {});
      link.transition('managed', 'backing-off', { close: { code: 1006, reason: '' } });
      await clock.advance(1000);
    }
    link.transition('connecting', 'hello-sent', { url: 'wss://x/api/channel' });
    link.transition('hello-sent', 'managed', {});
    expect(info()).toHaveLength(3);
    expect(lines.filter((l) => l.level === 20 && l.msg.endsWith('(rate-limited)'))).toHaveLength(29);
    await clock.advance(60_000);
    expect(info()).toHaveLength(4);
    expect(info()[3]).toMatchObject({ msg: 'managed by the server', suppressed: 29 });
    // Nothing else is pending: a further minute adds no line.
    await clock.advance(60_000);
    expect(info()).toHaveLength(4);
    link.transition('managed', 'backing-off', { close: { code: 1006, reason: '' } });
    expect(info()[4]).toMatchObject({ msg: 'control channel lost' });
    link.close();
  });

  it('close() drops the pending line (the session stopped)', async () => {
    const clock = createManualClock();
    const { log, info } = capture();
    const link = new LinkLog(log, clock, { burst: 1, refillMs: 60_000 });
    link.transition('connecting', 'hello-sent', { url: 'wss://x' });
    link.transition('hello-sent', 'managed', {});
    link.close();
    await clock.advance(120_000);
    expect(info().map((l) => l.msg)).toEqual(['control channel connected']);
  });
});
