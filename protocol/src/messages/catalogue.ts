import { type Static, type TObject, Type } from '@sinclair/typebox';
import { AckBody } from './ack.js';
import { AnalyticsBody } from './analytics.js';
import { EpochMs, Identifier } from './common.js';
import { ErrorBody } from './error.js';
import { EventBody } from './event.js';
import { HelloBody } from './hello.js';
import { JobCancelBody } from './job-cancel.js';
import { JobOfferBody } from './job-offer.js';
import { JobProgressBody } from './job-progress.js';
import { LicenceChangeBody } from './licence-change.js';
import { PingBody } from './ping.js';
import { PongBody } from './pong.js';
import { SettingsBody } from './settings.js';
import { StatusBody } from './status.js';
import { TrustAnchorsBody } from './trust-anchors.js';
import { WelcomeBody } from './welcome.js';

/** Who sends a message: `up` = device → server, `down` = server → device, `both`. */
export type Direction = 'up' | 'down' | 'both';

/**
 * Every message type of protocol major version 1 with its body schema and direction. This table
 * is the single source of the codec, the JSON Schemas and `docs/protocol.md`.
 */
export const MESSAGE_CATALOGUE = {
  hello: { direction: 'up', body: HelloBody },
  status: { direction: 'up', body: StatusBody },
  event: { direction: 'up', body: EventBody },
  'job-progress': { direction: 'up', body: JobProgressBody },
  analytics: { direction: 'up', body: AnalyticsBody },
  welcome: { direction: 'down', body: WelcomeBody },
  'job-offer': { direction: 'down', body: JobOfferBody },
  'job-cancel': { direction: 'down', body: JobCancelBody },
  'licence-change': { direction: 'down', body: LicenceChangeBody },
  settings: { direction: 'down', body: SettingsBody },
  'trust-anchors': { direction: 'down', body: TrustAnchorsBody },
  ack: { direction: 'down', body: AckBody },
  ping: { direction: 'both', body: PingBody },
  pong: { direction: 'both', body: PongBody },
  error: { direction: 'both', body: ErrorBody },
} as const satisfies Record<string, { direction: Direction; body: TObject }>;

export type MessageType = keyof typeof MESSAGE_CATALOGUE;
export const MESSAGE_TYPES = Object.keys(MESSAGE_CATALOGUE) as MessageType[];

export type BodyOf<T extends MessageType> = Static<(typeof MESSAGE_CATALOGUE)[T]['body']>;

/** The envelope fields every message carries around its body. */
export interface Envelope<T extends MessageType = MessageType> {
  /** Protocol version `MAJOR.MINOR` of the sender. */
  v: string;
  /** Message type: the discriminator of the union. */
  type: T;
  /** Unique id of this message (UUID recommended), 1–64 characters of `[A-Za-z0-9._:-]`. */
  id: string;
  /** For replies: the id of the message this answers. */
  correlationId?: string;
  /** Sender's clock when sending, ms since the Unix epoch. */
  sentAt: number;
  /** The type-specific body. */
  body: BodyOf<T>;
}

/** Any protocol message: a tagged union on `type`. */
export type Message = { [K in MessageType]: Envelope<K> }[MessageType];
/** The message of one type. */
export type MessageOf<T extends MessageType> = Envelope<T>;

export const EnvelopeFields = {
  v: Type.String({
    pattern: '^(0|[1-9][0-9]{0,3})\\.(0|[1-9][0-9]{0,3})$',
    description: 'Protocol version `MAJOR.MINOR`.',
  }),
  id: Identifier('Unique message id (UUID recommended).'),
  correlationId: Type.Optional(Identifier('For replies: id of the message this answers.')),
  sentAt: EpochMs('Sender clock when sending'),
};

/** The full JSON Schema (envelope + body) of one message type. */
export function messageSchema<T extends MessageType>(type: T) {
  const entry = MESSAGE_CATALOGUE[type];
  return Type.Object(
    {
      v: EnvelopeFields.v,
      type: Type.Literal(type, { description: 'Message type.' }),
      id: EnvelopeFields.id,
      correlationId: EnvelopeFields.correlationId,
      sentAt: EnvelopeFields.sentAt,
      body: entry.body,
    },
    { $id: `urn:router-fleet:protocol:v1:${type}`, title: type, description: entry.body.description },
  );
}

export function directionOf(type: MessageType): Direction {
  return MESSAGE_CATALOGUE[type].direction;
}
