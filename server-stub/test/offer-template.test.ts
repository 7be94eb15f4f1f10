import { randomUUID } from 'node:crypto';
import { decode, encode, isMessage } from '@router-fleet/protocol';
import { describe, expect, it } from 'vitest';
import { OfferTemplate, offerMessage, type OfferFields, type OfferSpec } from '../src/jobs/offer-template.js';

const spec: OfferSpec = {
  jobId: randomUUID(),
  baseUrl: 'https://fleet.example:8443',
  packet: { size: 16_384, sha256: 'ab'.repeat(32), name: 'Firmware "10.4" \\ für MRX5 \u2028 and more' },
  allowDowngrade: false,
  windowed: false,
};

function fields(over: Partial<OfferFields> = {}): OfferFields {
  return {
    id: randomUUID(),
    sentAt: 1_765_000_000_123,
    executionId: randomUUID(),
    token: `${Buffer.from('{"e":"x"}').toString('base64url')}.${'m'.repeat(43)}`,
    expiresAt: 1_765_000_900_000,
    deadline: 1_765_086_400_000,
    ...over,
  };
}

describe('offer template: the offers of one job as text', () => {
  it('gives exactly the text of encoding the validated message, offer after offer', () => {
    const template = new OfferTemplate(spec);
    for (let i = 0; i < 3; i++) {
      const f = fields();
      const text = template.text(f);
      expect(text).toBe(encode(offerMessage(spec, f)));
      const decoded = decode(text);
      expect(isMessage(decoded), String(decoded)).toBe(true);
      expect(decoded).toMatchObject({ type: 'job-offer', id: f.id, body: { executionId: f.executionId, packet: { url: `${spec.baseUrl}/api/packets/download/${f.executionId}` } } });
    }
  });

  it('carries each offer\'s install window when the job has one', () => {
    const windowed = { ...spec, allowDowngrade: true, windowed: true };
    const template = new OfferTemplate(windowed);
    const f = fields({ installWindow: { notBefore: 1_765_010_000_000, notAfter: 1_765_020_000_000 } });
    expect(template.text(f)).toBe(encode(offerMessage(windowed, f)));
    expect(() => template.text(fields())).toThrow(/install window/);
    expect(() => new OfferTemplate(spec).text(f)).toThrow(/install window/);
  });

  it('refuses a job or packet no offer could carry once, when the template is built', () => {
    expect(() => new OfferTemplate({ ...spec, packet: { ...spec.packet, sha256: 'not hex' } })).toThrow();
    expect(() => new OfferTemplate({ ...spec, jobId: 'bad id with spaces' })).toThrow();
  });

  it('refuses a time that is not an integer number of ms', () => {
    const template = new OfferTemplate(spec);
    expect(() => template.text(fields({ deadline: Number.NaN }))).toThrow(/not a time/);
    expect(() => template.text(fields({ expiresAt: 1.5 }))).toThrow(/not a time/);
  });
});
