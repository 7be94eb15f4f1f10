import { type Static, Type } from '@sinclair/typebox';
import { SessionParameters } from './welcome.js';

export const SettingsBody = Type.Object(
  {
    analyticsConsent: Type.Optional(
      Type.Boolean({ description: 'The account changed its analytics consent.' }),
    ),
    session: Type.Optional(SessionParameters),
  },
  { description: 'Settings that changed while the device is connected (ours; not in the vendor product).' },
);
export type SettingsBody = Static<typeof SettingsBody>;
