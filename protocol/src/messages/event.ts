import { type Static, Type } from '@sinclair/typebox';
import { EpochMs } from './common.js';

export const EVENT_SEVERITIES = ['debug', 'info', 'warning', 'error', 'critical'] as const;

export const EventBody = Type.Object(
  {
    seq: Type.Integer({
      minimum: 1,
      maximum: Number.MAX_SAFE_INTEGER,
      description: 'Per-device sequence number, increasing by one per event, kept across reboots.',
    }),
    kind: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: '^[a-z][a-z0-9]*([.-][a-z0-9]+)*$',
      description: 'Event kind, dotted lower case, e.g. `job.failed`, `link.down`, `boot`.',
    }),
    severity: Type.Union(
      EVENT_SEVERITIES.map((s) => Type.Literal(s)),
      { description: 'Severity.' },
    ),
    at: EpochMs('When it happened on the device'),
    details: Type.Optional(
      Type.Record(
        Type.String({ maxLength: 64 }),
        Type.Union([Type.String({ maxLength: 1024 }), Type.Number(), Type.Boolean(), Type.Null()]),
        { maxProperties: 32, description: 'Flat key → scalar details.' },
      ),
    ),
  },
  { description: 'A device event; kept in the device outbox until the server acknowledges its `seq`.' },
);
export type EventBody = Static<typeof EventBody>;
