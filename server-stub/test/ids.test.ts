import { describe, expect, it } from 'vitest';
import { type AccountRowId, type AccountUuid, asAccountRowId, asAccountUuid, asDeviceRowId, asDeviceUuid } from '../src/ids.js';

// The checks are the @ts-expect-error lines: `npm run typecheck` fails if a kind stops being distinct.
describe('identifier kinds', () => {
  it('keep a row id, a uuid and another table\'s id apart at compile time, and cost nothing at run time', () => {
    const byRowId = (id: AccountRowId) => id;
    const byUuid = (uuid: AccountUuid) => uuid;
    // @ts-expect-error a bare number is not known to be an account row id
    byRowId(7);
    // @ts-expect-error a device row id is not an account row id
    byRowId(asDeviceRowId(7));
    // @ts-expect-error a device uuid is not an account uuid
    byUuid(asDeviceUuid('2f1c7e5a-3b7d-4c1e-9a55-0d3c5e7b9a10'));
    expect(byRowId(asAccountRowId(7))).toBe(7);
    expect(byUuid(asAccountUuid('2f1c7e5a-3b7d-4c1e-9a55-0d3c5e7b9a10'))).toBe('2f1c7e5a-3b7d-4c1e-9a55-0d3c5e7b9a10');
    const plain: number = asAccountRowId(7); // a branded id still goes wherever its base type does
    expect(plain).toBe(7);
  });
});
