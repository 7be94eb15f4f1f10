import { type Static, Type } from '@sinclair/typebox';
import { Identifier, Text } from './common.js';

export const JobCancelBody = Type.Object(
  {
    executionId: Identifier('Execution to cancel.'),
    reason: Type.Optional(Text('Why it was cancelled.')),
  },
  {
    description:
      'Cancels an execution. Before the commit point (`installing`) the device aborts and reports `cancelled`; after it, it finishes and reports the real result.',
  },
);
export type JobCancelBody = Static<typeof JobCancelBody>;
