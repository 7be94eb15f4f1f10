import { type Static, Type } from '@sinclair/typebox';

export const PongBody = Type.Object(
  {},
  { description: 'Answer to `ping`; its correlationId is the ping message id.' },
);
export type PongBody = Static<typeof PongBody>;
