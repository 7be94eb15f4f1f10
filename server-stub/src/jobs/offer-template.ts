import { createMessage, encode } from '@router-fleet/protocol';
import type { WindowSpan } from './window.js';

/** What one job's offers share: the same job, packet and downgrade rule for every device. */
export interface OfferSpec {
  readonly jobId: string;
  /** Base URL of packet downloads (`https://host:port`). */
  readonly baseUrl: string;
  readonly packet: { readonly size: number; readonly sha256: string; readonly name: string };
  readonly allowDowngrade: boolean;
  /** Whether the offers carry an install window (its times are per offer). */
  readonly windowed: boolean;
}

/** What differs from one offer of a job to the next. */
export interface OfferFields {
  /** Message id. */
  readonly id: string;
  readonly sentAt: number;
  readonly executionId: string;
  readonly token: string;
  readonly expiresAt: number;
  readonly deadline: number;
  readonly installWindow?: WindowSpan | undefined;
}

type Slot = 'id' | 'executionId' | 'token' | 'sentAt' | 'expiresAt' | 'deadline' | 'notBefore' | 'notAfter';

/**
 * Placeholders of the sample offer: identifiers that match the schema and occur nowhere else in
 * an offer, and integers of the epoch range that no size or time of ours reaches.
 */
const STRING_SLOTS: ReadonlyArray<[Slot, string]> = [
  ['id', 'zq0slot0id0zq'],
  ['executionId', 'zq0slot0execution0zq'],
  ['token', 'zq0slot0download0token0zq'],
];
const NUMBER_SLOTS: ReadonlyArray<[Slot, number]> = [
  ['sentAt', 8_639_999_999_999_001],
  ['expiresAt', 8_639_999_999_999_002],
  ['deadline', 8_639_999_999_999_003],
  ['notBefore', 8_639_999_999_999_004],
  ['notAfter', 8_639_999_999_999_005],
];
const SLOT_COUNT: Readonly<Record<Slot, number>> = {
  id: 1,
  // In the body and in the packet URL.
  executionId: 2,
  token: 1,
  sentAt: 1,
  expiresAt: 1,
  deadline: 1,
  notBefore: 1,
  notAfter: 1,
};

/**
 * A job's offers as text, built once per job and packet: a sample offer with placeholders in the
 * places that differ per device is built with `createMessage`, validated against the schema and
 * encoded once, then cut at the placeholders; each offer is the pieces joined with its own values.
 * The text is exactly what `encode(createMessage('job-offer', …))` gives for the same values
 * (test: offer-template), without validating and encoding every device's offer: for a job to
 * 20,000 routers that was one schema check and one `JSON.stringify` of the whole message each.
 */
export class OfferTemplate {
  readonly #pieces: string[];
  readonly #slots: Slot[];
  readonly spec: OfferSpec;

  constructor(spec: OfferSpec) {
    this.spec = spec;
    const str = Object.fromEntries(STRING_SLOTS) as Record<Slot, string>;
    const num = Object.fromEntries(NUMBER_SLOTS) as Record<Slot, number>;
    // Validated here (a bad job or packet throws PROTO_ENCODE_INVALID once, as every offer did before).
    const sample = encode(offerMessage(spec, {
      id: str.id,
      sentAt: num.sentAt,
      executionId: str.executionId,
      token: str.token,
      expiresAt: num.expiresAt,
      deadline: num.deadline,
      ...(spec.windowed ? { installWindow: { notBefore: num.notBefore, notAfter: num.notAfter } } : {}),
    }));
    const alternatives = [...STRING_SLOTS.map(([, s]) => s), ...NUMBER_SLOTS.map(([, n]) => String(n))];
    const bySentinel = new Map<string, Slot>([
      ...STRING_SLOTS.map(([slot, s]) => [s, slot] as [string, Slot]),
      ...NUMBER_SLOTS.map(([slot, n]) => [String(n), slot] as [string, Slot]),
    ]);
    const parts = sample.split(new RegExp(`(${alternatives.join('|')})`));
    this.#pieces = parts.filter((_, i) => i % 2 === 0);
    this.#slots = parts.filter((_, i) => i % 2 === 1).map((s) => bySentinel.get(s)!);
    for (const [slot, want] of Object.entries(SLOT_COUNT) as Array<[Slot, number]>) {
      const expected = slot === 'notBefore' || slot === 'notAfter' ? (spec.windowed ? want : 0) : want;
      const found = this.#slots.filter((s) => s === slot).length;
      if (found !== expected) throw new Error(`offer template: ${slot} occurs ${found} times, not ${expected}`);
    }
  }

  /** One device's offer, the text of one frame. */
  text(f: OfferFields): string {
    if ((f.installWindow !== undefined) !== this.spec.windowed) throw new Error('offer template: install window does not match the template');
    const pieces = this.#pieces;
    const slots = this.#slots;
    let out = pieces[0]!;
    for (let i = 0; i < slots.length; i++) out += slotText(slots[i]!, f) + pieces[i + 1]!;
    return out;
  }
}

/** The offer as a message object (the template's sample, and what a port without text sending is given). */
export function offerMessage(spec: OfferSpec, f: OfferFields) {
  return createMessage(
    'job-offer',
    {
      executionId: f.executionId,
      jobId: spec.jobId,
      packet: {
        url: `${spec.baseUrl}/api/packets/download/${f.executionId}`,
        size: spec.packet.size,
        sha256: spec.packet.sha256,
        description: spec.packet.name.slice(0, 256),
      },
      download: { token: f.token, expiresAt: f.expiresAt },
      deadline: f.deadline,
      ...(f.installWindow ? { installWindow: f.installWindow } : {}),
      allowDowngrade: spec.allowDowngrade,
    },
    { id: f.id, sentAt: f.sentAt },
  );
}

function slotText(slot: Slot, f: OfferFields): string {
  switch (slot) {
    case 'id':
      return stringContent(f.id);
    case 'executionId':
      return stringContent(f.executionId);
    case 'token':
      return stringContent(f.token);
    case 'sentAt':
      return epochMs(f.sentAt);
    case 'expiresAt':
      return epochMs(f.expiresAt);
    case 'deadline':
      return epochMs(f.deadline);
    case 'notBefore':
      return epochMs(f.installWindow!.notBefore);
    case 'notAfter':
      return epochMs(f.installWindow!.notAfter);
  }
}

/** A string's JSON text without its quotes (the placeholder sits inside a JSON string). */
function stringContent(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}

/** The per-offer values are the server's own (rows it wrote, its clock): an integer check is what the schema adds. */
function epochMs(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`offer template: ${n} is not a time in ms`);
  return String(n);
}
