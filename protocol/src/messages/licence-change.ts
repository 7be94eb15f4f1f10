import { type Static, Type } from '@sinclair/typebox';
import { Code, Text } from './common.js';
import { AdmissionSchema } from './welcome.js';

export const LicenceChangeBody = Type.Object(
  {
    admission: AdmissionSchema,
    reason: Type.Optional(Code('Why, e.g. `LICENCE_EXPIRED`, `LICENCE_ACTIVATED`.')),
    reasonMessage: Type.Optional(Text('Human-readable reason.')),
  },
  { description: 'The device’s admission changed while connected (licence expired or became free).' },
);
export type LicenceChangeBody = Static<typeof LicenceChangeBody>;
