import { type Static, Type } from '@sinclair/typebox';

export const PingBody = Type.Object(
  {},
  { description: 'Keep-alive; answered by `pong`. Either side may send it (the device uses the same type).' },
);
export type PingBody = Static<typeof PingBody>;
