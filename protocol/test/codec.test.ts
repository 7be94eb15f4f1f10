import { describe, expect, it } from 'vitest';
import {
  CloseCodes,
  createMessage,
  decode,
  encode,
  isMessage,
  MAX_FRAME_BYTES,
  MESSAGE_TYPES,
  mqttBucket,
  mqttTopics,
  PROTOCOL_VERSION,
  ProtocolError,
  WS_SUBPROTOCOL,
} from '../src/index.js';
import { isUtf8 } from 'node:buffer';
import { mulberry32 } from '../src/random.js';
import { frameBytes, loadFixtures } from './helpers/fixtures.js';

const fixtures = loadFixtures();

describe('golden fixtures', () => {
  for (const [type, file] of fixtures) {
    describe(type, () => {
      for (const c of file.valid ?? []) {
        it(`accepts: ${c.name}`, () => {
          const bytes = frameBytes(c);
          for (const input of [bytes, bytes.toString('utf8'), new Uint8Array(bytes)]) {
            const result = decode(input);
            if (result instanceof ProtocolError) throw result;
            expect(result.type).toBe(type);
            expect(result).toEqual(c.frame);
          }
        });
      }
      for (const c of file.invalid) {
        it(`rejects with ${c.expect}: ${c.name}`, () => {
          const result = decode(frameBytes(c));
          expect(result).toBeInstanceOf(ProtocolError);
          const err = result as ProtocolError;
          expect(err.code).toBe(c.expect);
          if (c.pointer !== undefined) expect(err.pointer).toBe(c.pointer);
        });
      }
    });
  }
});

describe('decode', () => {
  const hello = fixtures.get('hello')!.valid![0]!.frame as { body: unknown };

  it('keeps unknown fields (forward compatibility)', () => {
    const frame = JSON.stringify({
      ...(hello as object),
      future: 1,
      body: { ...(hello.body as object), later: 'x' },
    });
    const result = decode(frame);
    expect(isMessage(result)).toBe(true);
    expect((result as unknown as { future: number }).future).toBe(1);
  });

  it('accepts every minor version of the same major', () => {
    const result = decode(JSON.stringify({ ...(hello as object), v: '1.7' }));
    expect(isMessage(result)).toBe(true);
  });

  it('filters by direction', () => {
    const welcome = frameBytes(fixtures.get('welcome')!.valid![0]!);
    expect((decode(welcome, { accept: 'up' }) as ProtocolError).code).toBe('PROTO_UNKNOWN_TYPE');
    expect(isMessage(decode(welcome, { accept: 'down' }))).toBe(true);
    const ping = frameBytes(fixtures.get('ping')!.valid![0]!);
    expect(isMessage(decode(ping, { accept: 'up' }))).toBe(true);
    expect(isMessage(decode(ping, { accept: 'down' }))).toBe(true);
  });

  it('measures the frame limit in UTF-8 bytes, not characters', () => {
    const text = JSON.stringify({ ...(hello as object), pad: 'é'.repeat(40_000) });
    expect(text.length).toBeLessThan(MAX_FRAME_BYTES);
    expect((decode(text) as ProtocolError).code).toBe('PROTO_TOO_LARGE');
    expect(isMessage(decode(text, { maxBytes: 200_000 }))).toBe(true);
  });

  it('keeps a byte-order mark, which JSON does not allow, and takes views of any buffer', () => {
    const frame = Buffer.from(JSON.stringify(hello));
    const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), frame]);
    expect((decode(withBom) as ProtocolError).code).toBe('PROTO_INVALID_JSON');
    const shared = new Uint8Array(new SharedArrayBuffer(frame.length + 4), 2, frame.length);
    shared.set(frame);
    expect(decode(shared)).toEqual(hello);
    const surrogate = Buffer.concat([frame.subarray(0, 10), Buffer.from([0xed, 0xa0, 0x80]), frame.subarray(10)]);
    expect((decode(surrogate) as ProtocolError).code).toBe('PROTO_INVALID_UTF8');
  });

  it('reads ASCII frames as they are and leaves the first byte above 0x7f to UTF-8 decoding', () => {
    const frame = Buffer.from(JSON.stringify({ ...(hello as object), note: 'del \u007f end' }));
    expect(frame.includes(0x7f)).toBe(true);
    expect((decode(frame) as unknown as { note: string }).note).toBe('del \u007f end');
    // A lone continuation byte, at the end and at the start of the ASCII text around it.
    const at = frame.indexOf(0x7f);
    const lone = Buffer.from(frame);
    lone[at] = 0x80;
    expect((decode(lone) as ProtocolError).code).toBe('PROTO_INVALID_UTF8');
    expect((decode(Buffer.concat([Buffer.from([0x80]), frame])) as ProtocolError).code).toBe('PROTO_INVALID_UTF8');
    expect((decode(Buffer.concat([frame, Buffer.from([0x80])])) as ProtocolError).code).toBe('PROTO_INVALID_UTF8');
    // An overlong encoding of an ASCII character is not that character.
    const overlong = Buffer.concat([frame.subarray(0, at), Buffer.from([0xc1, 0xbf]), frame.subarray(at + 1)]);
    expect((decode(overlong) as ProtocolError).code).toBe('PROTO_INVALID_UTF8');
    // Two-byte UTF-8 next to ASCII decodes as UTF-8, not byte by byte.
    const accented = Buffer.concat([frame.subarray(0, at), Buffer.from([0xc3, 0xa9]), frame.subarray(at + 1)]);
    expect((decode(accented) as unknown as { note: string }).note).toBe('del \u00e9 end');
  });

  it('reads an ASCII view that is not a Buffer, at an offset into a larger buffer', () => {
    const frame = Buffer.from(JSON.stringify(hello));
    const backing = new Uint8Array(frame.length + 8).fill(0xff);
    backing.set(frame, 5);
    const view = new Uint8Array(backing.buffer, 5, frame.length);
    expect(Buffer.isBuffer(view)).toBe(false);
    expect(decode(view)).toEqual(hello);
    // The bytes around the view (not ASCII, not UTF-8) are not read.
    expect((decode(new Uint8Array(backing.buffer, 4, frame.length)) as ProtocolError).code).toBe('PROTO_INVALID_UTF8');
    const ascii = Buffer.from(backing.buffer, 5, frame.length);
    expect(decode(ascii)).toEqual(hello);
  });

  it('refuses exactly the byte strings that are not UTF-8, short and long', () => {
    // Pieces: ASCII, valid sequences of 2, 3 and 4 bytes (U+FFFD itself among them), and bytes
    // that break a sequence (a lone continuation, overlong, a surrogate, above U+10FFFF, cut short).
    const pieces = [
      [0x41],
      [0x7f],
      [0xc3, 0xa9],
      [0xef, 0xbf, 0xbd],
      [0xe2, 0x82, 0xac],
      [0xf0, 0x9f, 0x98, 0x80],
      [0x80],
      [0xc1, 0xbf],
      [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80],
      [0xe2, 0x82],
      [0xff],
    ];
    const rand = mulberry32(0xf00d);
    let refused = 0;
    for (let i = 0; i < 4000; i++) {
      const size = i % 2 === 0 ? 1 + Math.floor(rand() * 500) : 513 + Math.floor(rand() * 1500);
      const bytes: number[] = [0x7b];
      // Mostly ASCII, as frames are; the rarer the other pieces, the more frames are valid.
      const odds = rand() * 0.02;
      while (bytes.length < size) bytes.push(...(rand() < odds ? pieces[Math.floor(rand() * pieces.length)]! : [0x61]));
      const frame = Buffer.from(bytes);
      const result = decode(frame);
      const invalidUtf8 = result instanceof ProtocolError && result.code === 'PROTO_INVALID_UTF8';
      expect(invalidUtf8, `bytes ${frame.toString('hex')}`).toBe(!isUtf8(frame));
      if (invalidUtf8) refused++;
    }
    // Both verdicts were reached often enough to mean something.
    expect(refused).toBeGreaterThan(400);
    expect(refused).toBeLessThan(3600);
  });

  it('decodes a frame holding U+FFFD itself and refuses one that holds it beside a broken sequence', () => {
    const frame = Buffer.from(JSON.stringify({ ...(hello as object), note: 'a \ufffd b' }));
    expect((decode(frame) as unknown as { note: string }).note).toBe('a \ufffd b');
    const at = frame.indexOf('a \ufffd b') + 1;
    const broken = Buffer.concat([frame.subarray(0, at), Buffer.from([0x80]), frame.subarray(at)]);
    expect((decode(broken) as ProtocolError).code).toBe('PROTO_INVALID_UTF8');
  });

  it('decodes a detached buffer as an empty frame', () => {
    const frame = Buffer.from(JSON.stringify(hello));
    const view = new Uint8Array(new ArrayBuffer(frame.length + 2), 1, frame.length);
    view.set(frame);
    structuredClone(view.buffer, { transfer: [view.buffer] });
    expect((decode(view) as ProtocolError).code).toBe('PROTO_INVALID_JSON');
  });

  it('rejects strings with lone surrogates as invalid UTF-8', () => {
    expect((decode('{"v":"1.0","x":"\ud800"}') as ProtocolError).code).toBe('PROTO_INVALID_UTF8');
  });

  it('reports the pointer of the first violation', () => {
    const result = decode(
      JSON.stringify({ ...(hello as object), body: { ...(hello.body as object), model: 5 } }),
    );
    expect(result).toMatchObject({ code: 'PROTO_SCHEMA_VIOLATION', pointer: '/body/model' });
    expect((result as ProtocolError).toJSON()).toMatchObject({
      code: 'PROTO_SCHEMA_VIOLATION',
      pointer: '/body/model',
    });
  });
});

describe('encode and createMessage', () => {
  it('round-trips every valid fixture', () => {
    for (const type of MESSAGE_TYPES) {
      const frame = fixtures.get(type)!.valid![0]!.frame as Parameters<typeof encode>[0];
      expect(decode(encode(frame))).toEqual(frame);
    }
  });

  it('fills the envelope', () => {
    const msg = createMessage('ping', {}, { sentAt: 5, correlationId: 'abc' });
    expect(msg).toMatchObject({ v: PROTOCOL_VERSION, type: 'ping', sentAt: 5, correlationId: 'abc', body: {} });
    expect(msg.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('refuses to encode an invalid message, unless validation is off', () => {
    const bad = createMessage('event', { seq: 0, kind: 'boot', severity: 'info', at: 1 });
    expect(() => encode(bad)).toThrow(ProtocolError);
    try {
      encode(bad);
    } catch (err) {
      expect((err as ProtocolError).code).toBe('PROTO_ENCODE_INVALID');
      expect((err as ProtocolError).pointer).toBe('/body/seq');
    }
    expect(encode(bad, { validate: false })).toContain('"seq":0');
  });
});

describe('transport bindings', () => {
  it('carries the major version in the subprotocol', () => {
    expect(WS_SUBPROTOCOL).toBe('router-fleet.v1');
  });
  it('uses private close codes in 4000–4999 and RFC codes below', () => {
    for (const code of Object.values(CloseCodes)) {
      expect(code >= 4000 ? code < 5000 : code >= 1000 && code <= 1015).toBe(true);
    }
    expect(new Set(Object.values(CloseCodes)).size).toBe(Object.values(CloseCodes).length);
  });
  it('lays out MQTT topics per bucket and device and refuses wildcards', () => {
    const b = mqttBucket('dev-2');
    expect(mqttTopics('dev-2')).toEqual({
      up: `rf/v1/${b}/dev-2/up`,
      down: `rf/v1/${b}/dev-2/down`,
      presence: `rf/v1/${b}/dev-2/presence`,
    });
    expect(() => mqttTopics('dev/1')).toThrow(TypeError);
    expect(() => mqttTopics('#')).toThrow(TypeError);
  });
});
