import { type Static, Type } from '@sinclair/typebox';
import { Text } from './common.js';

export const ErrorBody = Type.Object(
  {
    code: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: '^[A-Z][A-Z0-9_]*$',
      description: 'Stable code, e.g. `PROTO_SCHEMA_VIOLATION`, `SERVER_NOT_MANAGED`.',
    }),
    message: Text('Human-readable detail.', 1024),
    pointer: Type.Optional(
      Type.String({ maxLength: 256, description: 'JSON pointer of the offending field.' }),
    ),
    retryable: Type.Optional(
      Type.Boolean({ description: 'Whether sending the same message later may succeed.' }),
    ),
  },
  {
    description: 'The peer could not process a message (its correlationId names it). The channel stays open.',
  },
);
export type ErrorBody = Static<typeof ErrorBody>;
