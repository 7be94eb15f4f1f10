import { describe, expect, it } from 'vitest';
import { decode, isMessage, ProtocolError, ProtocolErrorCodes, validateMessage } from '../src/index.js';
import { validateWithDetails } from '../src/message-validation.js';
import { mulberry32 as rng } from '../src/random.js';
import { frameBytes, loadFixtures } from './helpers/fixtures.js';

const WEIRD: unknown[] = [
  null,
  true,
  0,
  -1,
  1e308,
  -0,
  1.5,
  '',
  '\u0000',
  'x'.repeat(300),
  [],
  {},
  [[[]]],
  { __proto__: 1 },
  { constructor: { prototype: {} } },
  Number.MAX_SAFE_INTEGER + 2,
];

function mutateValue(value: unknown, rand: () => number, depth = 0): unknown {
  if (depth > 6 || rand() < 0.15) return WEIRD[Math.floor(rand() * WEIRD.length)];
  if (Array.isArray(value)) {
    const copy = value.map((v) => (rand() < 0.3 ? mutateValue(v, rand, depth + 1) : v));
    if (rand() < 0.2) copy.push(WEIRD[Math.floor(rand() * WEIRD.length)]);
    return copy;
  }
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const r = rand();
      if (r < 0.08) continue; // drop a field
      out[rand() < 0.03 ? `${k}_` : k] = r < 0.35 ? mutateValue(v, rand, depth + 1) : v;
    }
    if (rand() < 0.1)
      out[['__proto__', 'extra', 'type', 'v'][Math.floor(rand() * 4)]!] =
        WEIRD[Math.floor(rand() * WEIRD.length)];
    return out;
  }
  return WEIRD[Math.floor(rand() * WEIRD.length)];
}

function mutateBytes(bytes: Buffer, rand: () => number): Buffer {
  const b = Buffer.from(bytes);
  const op = Math.floor(rand() * 5);
  if (op === 0) {
    for (let i = 0; i < 1 + rand() * 4; i++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    return b;
  }
  if (op === 1) return b.subarray(0, Math.floor(rand() * b.length));
  if (op === 2) {
    const at = Math.floor(rand() * b.length);
    return Buffer.concat([
      b.subarray(0, at),
      Buffer.from([0xc0 + Math.floor(rand() * 64), 0x80]),
      b.subarray(at),
    ]);
  }
  if (op === 3) {
    const at = Math.floor(rand() * b.length);
    return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(rand() * 8))]);
  }
  const random = Buffer.alloc(Math.floor(rand() * 200));
  for (let i = 0; i < random.length; i++) random[i] = Math.floor(rand() * 256);
  return random;
}

describe('decode never throws', () => {
  const fixtures = loadFixtures();
  const seeds = [...fixtures.values()].flatMap((f) => (f.valid ?? []).map((c) => c.frame));
  const codes = new Set(Object.keys(ProtocolErrorCodes));

  it('survives 12,000 random and mutated inputs with a known code or a valid message', () => {
    const rand = rng(0x5eed);
    const seen = new Map<string, number>();
    for (let i = 0; i < 12_000; i++) {
      const seed = seeds[i % seeds.length];
      const input =
        i % 2 === 0
          ? Buffer.from(JSON.stringify(mutateValue(seed, rand)))
          : mutateBytes(Buffer.from(JSON.stringify(seed)), rand);
      let result: ReturnType<typeof decode>;
      try {
        result = decode(i % 3 === 0 ? input.toString('latin1') : input);
      } catch (err) {
        throw new Error(`decode threw on case ${i}: ${String(err)}\ninput: ${input.toString('base64')}`);
      }
      const key = isMessage(result) ? 'ok' : (result as ProtocolError).code;
      if (!isMessage(result)) expect(codes.has(key), key).toBe(true);
      seen.set(key, (seen.get(key) ?? 0) + 1);
    }
    // The mutator must actually reach the deep checks, or this test proves little.
    for (const code of [
      'PROTO_INVALID_JSON',
      'PROTO_INVALID_UTF8',
      'PROTO_INVALID_ENVELOPE',
      'PROTO_SCHEMA_VIOLATION',
      'ok',
    ]) {
      expect(seen.get(code) ?? 0, code).toBeGreaterThan(50);
    }
  });

  it('handles deep nesting and huge numbers inside the size limit', () => {
    for (const frame of [
      '['.repeat(30_000),
      `${'['.repeat(20_000)}${']'.repeat(20_000)}`,
      '{"v":"1.0","type":"ping","id":"a","sentAt":1e400,"body":{}}',
    ]) {
      const result = decode(frame);
      expect(result).toBeInstanceOf(ProtocolError);
    }
    const tooLarge = frameBytes({ name: 'big', frameText: '{{x*65537}}' });
    expect((decode(tooLarge) as ProtocolError).code).toBe('PROTO_TOO_LARGE');
  });
});

describe('the fast validation path', () => {
  const fixtures = loadFixtures();
  const seeds = [...fixtures.values()].flatMap((f) => [
    ...(f.valid ?? []).map((c) => c.frame),
    ...f.invalid.filter((c) => c.frame !== undefined).map((c) => c.frame),
  ]);
  const VERSIONS: unknown[] = ['1.0', '1.1', '1.9999', '1.10000', '01.1', '2.0', '0.9', '1', 1.1, undefined];

  const outcome = (result: ReturnType<typeof validateMessage>) =>
    result instanceof ProtocolError
      ? { code: result.code, pointer: result.pointer, message: result.message }
      : { ok: result };

  // The codec tries one compiled check per type first and names errors only when it fails; it must
  // accept exactly what the ordered checks accept, and give every bad message the same error.
  it('gives the same result as the ordered checks for 12,000 mutated messages, in every direction', () => {
    const rand = rng(0xc0dec);
    let accepted = 0;
    for (let i = 0; i < 12_000; i++) {
      const seed = seeds[i % seeds.length];
      let value = rand() < 0.6 ? mutateValue(seed, rand) : structuredClone(seed);
      if (value && typeof value === 'object' && !Array.isArray(value) && rand() < 0.2) {
        value = { ...value, v: VERSIONS[Math.floor(rand() * VERSIONS.length)] };
      }
      for (const accept of [undefined, 'up', 'down'] as const) {
        const fast = outcome(validateMessage(value, accept));
        expect(fast, `case ${i} (${accept}): ${JSON.stringify(value)}`).toEqual(
          outcome(validateWithDetails(value, accept)),
        );
        if ('ok' in fast) accepted++;
      }
    }
    // Both accepting and refusing must be exercised, or the comparison proves little.
    expect(accepted).toBeGreaterThan(1_000);
    expect(accepted).toBeLessThan(30_000);
  });

  // A pattern is matched on the parsed string: a JSON escape in the frame's text stands for the
  // character it names, so `\u0061` in a digest is an `a` and `\u0041` an `A`.
  it('judges pattern-checked strings written with JSON escapes by the characters they stand for', () => {
    const status = fixtures.get('status')!.valid![0]!.frame as { body: { certificates: object[] } };
    const cert = status.body.certificates[0] as { fingerprintSha256: string; notAfter: string };
    const digest = cert.fingerprintSha256;
    const date = cert.notAfter;
    const text = JSON.stringify(status);
    const cases: [string, string, boolean][] = [
      [JSON.stringify(digest), `"\\u0061${digest.slice(1)}"`, true],
      [JSON.stringify(digest), `"${digest.slice(0, 63)}\\u0066"`, true],
      [JSON.stringify(digest), `"\\u0041${digest.slice(1)}"`, false],
      [JSON.stringify(digest), `"${digest.slice(0, 63)}\\u0067"`, false],
      [JSON.stringify(digest), `"${digest.slice(0, 62)}\\n"`, false],
      [JSON.stringify(date), `"\\u0032${date.slice(1)}"`, true],
      [JSON.stringify(date), `"${date.slice(0, 19)}\\u005a"`, true],
      [JSON.stringify(date), `"\\u0662${date.slice(1)}"`, false],
      [JSON.stringify(date), `"${date.slice(0, 19)}\\u007a"`, false],
      [JSON.stringify(status.body), JSON.stringify(status.body).replace('"fingerprintSha256"', '"fingerprint\\u0053ha256"'), true],
    ];
    for (const [from, to, valid] of cases) {
      expect(text.includes(from)).toBe(true);
      const frame = text.replace(from, to);
      const decoded = decode(Buffer.from(frame));
      expect(isMessage(decoded), frame).toBe(valid);
      expect(outcome(decoded), frame).toEqual(outcome(validateWithDetails(JSON.parse(frame))));
    }
  });
});
