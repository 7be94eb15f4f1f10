import { type Static, Type } from '@sinclair/typebox';
import { Code, Count, Identifier, Percent, Text } from './common.js';
import { JobExecutionStateSchema } from './job-states.js';

export const JobProgressBody = Type.Object(
  {
    executionId: Identifier('Execution id from the job offer.'),
    state: JobExecutionStateSchema,
    percent: Type.Optional(Percent('Progress of the current state')),
    bytesDone: Type.Optional(Count('Bytes downloaded so far.')),
    bytesTotal: Type.Optional(Count('Packet size in bytes.')),
    errorCode: Type.Optional(
      Code('Stable error code when the state is failed, rejected or timed-out (e.g. AGENT_…).'),
    ),
    errorMessage: Type.Optional(Text('Human-readable error detail.', 1024)),
  },
  {
    description:
      'Progress or result of a job execution. Duplicates are harmless; a terminal state is repeated until the server acknowledges it (an `ack` whose correlationId is this message id).',
  },
);
export type JobProgressBody = Static<typeof JobProgressBody>;
