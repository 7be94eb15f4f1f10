import { describe, expect, it } from 'vitest';
import {
  correlationIdOf,
  createMessage,
  decode,
  errorReplyBody,
  HelloBody,
  isIdentifier,
  isMessage,
  isSerialNumber,
  ProtocolError,
} from '../src/index.js';

function refused(frame: string): ProtocolError {
  const result = decode(frame);
  if (isMessage(result)) throw new Error('decoded');
  return result;
}

describe('identifiers', () => {
  it('ids are 1–64 of letters, digits and ._:-; serial numbers the same without :', () => {
    for (const id of ['a', '2f1c7e5a-3b7d-4c1e-9a55-0d3c5e7b9a10', 'job:1.x_y', 'x'.repeat(64)]) expect(isIdentifier(id), id).toBe(true);
    for (const id of ['', 'x'.repeat(65), 'a/b', 'a b', 'ä', '#', 7, null]) expect(isIdentifier(id), String(id)).toBe(false);
    for (const s of ['MRX5-2011-000123', 'a.b_c', 'x'.repeat(64)]) expect(isSerialNumber(s), s).toBe(true);
    for (const s of ['', 'a:b', 'x'.repeat(65), 'a b', 12]) expect(isSerialNumber(s), String(s)).toBe(false);
  });

  it('the message schemas use the same rules', () => {
    expect(HelloBody.properties.serialNumber.pattern).toBe('^[A-Za-z0-9._-]+$');
    expect(HelloBody.properties.deviceId.pattern).toBe('^[A-Za-z0-9._:-]+$');
  });
});

describe('error replies', () => {
  it('answer a bad type, version or body by the frame id, and nothing else', () => {
    const ping = createMessage('ping', {});
    const unknown = JSON.stringify({ ...ping, type: 'teleport' });
    expect(correlationIdOf(refused(unknown), unknown)).toBe(ping.id);
    expect(correlationIdOf(refused(unknown), Buffer.from(unknown))).toBe(ping.id);
    const bad = JSON.stringify(createMessage('event', { seq: 0, kind: 'x', severity: 'info', at: 0 }));
    const badError = refused(bad);
    expect(badError.code).toBe('PROTO_SCHEMA_VIOLATION');
    expect(correlationIdOf(badError, bad)).toBe(JSON.parse(bad).id);
    // An id that is not an identifier is not echoed.
    const oddId = JSON.stringify({ ...ping, type: 'teleport', id: 'a b' });
    expect(correlationIdOf(refused(oddId), oddId)).toBeUndefined();
    // A broken envelope or no JSON at all: no message to name.
    const noSentAt = JSON.stringify({ v: ping.v, type: 'ping', id: 'x1', body: {} });
    expect(refused(noSentAt).code).toBe('PROTO_INVALID_ENVELOPE');
    expect(correlationIdOf(refused(noSentAt), noSentAt)).toBeUndefined();
    expect(correlationIdOf(refused('{not json'), '{not json')).toBeUndefined();
  });

  it('carry the code, the message and pointer cut to the schema bounds, not retryable', () => {
    expect(errorReplyBody(new ProtocolError('PROTO_SCHEMA_VIOLATION', 'm'.repeat(2000), { pointer: `/${'p'.repeat(300)}` }))).toEqual({
      code: 'PROTO_SCHEMA_VIOLATION',
      message: 'm'.repeat(1024),
      pointer: `/${'p'.repeat(255)}`,
      retryable: false,
    });
    expect(errorReplyBody(new ProtocolError('PROTO_INVALID_JSON', 'x'))).toEqual({ code: 'PROTO_INVALID_JSON', message: 'x', retryable: false });
  });
});
