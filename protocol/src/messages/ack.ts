import { type Static, Type } from '@sinclair/typebox';

export const AckBody = Type.Object(
  {
    seqs: Type.Array(Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), {
      maxItems: 1000,
      description:
        'Event sequence numbers stored by the server (duplicates included); the device drops them from its outbox.',
    }),
  },
  {
    description:
      'Acknowledges events by sequence number, or, with an empty list and a correlationId, the message that correlationId names (a terminal job-progress).',
  },
);
export type AckBody = Static<typeof AckBody>;
