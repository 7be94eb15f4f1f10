import { describe, expect, it } from 'vitest';
import { addMonthsUtc, DAY } from '../src/clock.js';
import { isAppError } from '../src/errors.js';
import { ARTICLES, type LicenceKind } from '../src/licensing/plans.js';
import {
  checkActivate,
  checkRedeem,
  dueLicenceEvents,
  entitlement,
  type LicenceFacts,
  licenceStatus,
} from '../src/licensing/rules.js';

const T0 = Date.UTC(2026, 0, 1);
const M = (n: number) => addMonthsUtc(T0, n);
let seq = 0;

function lic(kind: LicenceKind, o: { issued?: number; redeemed?: number; act?: number | null } = {}): LicenceFacts {
  const act = o.act ?? null;
  return {
    id: ++seq,
    uuid: `l${seq}`,
    kind,
    seats: ARTICLES[kind].seats,
    issuedAt: o.issued ?? T0,
    redeemedAt: o.redeemed ?? o.issued ?? T0,
    activationAt: act,
    expiresAt: act === null ? null : addMonthsUtc(act, 12),
  };
}

function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (isAppError(err)) return err.code;
    throw err;
  }
}

describe('licence status over time', () => {
  const cases: { name: string; l: () => LicenceFacts; at: number; status: string }[] = [
    { name: 'redeemed, not activated', l: () => lic('basic-1'), at: M(1), status: 'available' },
    { name: 'activation scheduled later', l: () => lic('basic-1', { act: M(2) }), at: M(1), status: 'scheduled' },
    { name: 'activation date reached', l: () => lic('basic-1', { act: M(2) }), at: M(2), status: 'active' },
    { name: 'last moment of the 12-month term', l: () => lic('basic-1', { act: M(0) }), at: M(12) - 1, status: 'active' },
    { name: 'term over after 12 months', l: () => lic('basic-1', { act: M(0) }), at: M(12), status: 'expired' },
    { name: 'Free also expires after 12 months', l: () => lic('free', { act: M(0) }), at: M(12), status: 'expired' },
    { name: 'kept in stock 24 months: still available', l: () => lic('basic-25'), at: M(24) - 1, status: 'available' },
    { name: 'kept in stock 24 months: expired', l: () => lic('basic-25'), at: M(24), status: 'expired' },
    {
      name: 'activated just before the stock deadline runs its full term',
      l: () => lic('pro', { act: M(24) - DAY }),
      at: M(30),
      status: 'active',
    },
  ];
  it.each(cases)('$name → $status', ({ l, at, status }) => {
    const x = l();
    expect(licenceStatus(x, [x], at)).toBe(status);
  });
});

describe('redemption', () => {
  const cases: {
    name: string;
    kind: LicenceKind;
    issued?: number;
    held: () => LicenceFacts[];
    at: number;
    error?: string;
  }[] = [
    { name: 'a fresh code', kind: 'basic-1', held: () => [], at: M(1) },
    { name: 'within 24 months of issue', kind: 'basic-1', held: () => [], at: M(24) - 1 },
    { name: '24 months after issue', kind: 'basic-1', held: () => [], at: M(24), error: 'SERVER_LICENCE_CODE_EXPIRED' },
    { name: 'Basic 25 next to Basic 1 (same plan)', kind: 'basic-25', held: () => [lic('basic-1', { act: T0 })], at: M(1) },
    {
      name: 'Pro into a Basic account (plans cannot be mixed)',
      kind: 'pro',
      held: () => [lic('basic-1', { act: T0 })],
      at: M(1),
      error: 'SERVER_LICENCE_PLAN_MIX',
    },
    {
      name: 'Basic into a Pro account with Pro in stock',
      kind: 'basic-1',
      held: () => [lic('pro')],
      at: M(1),
      error: 'SERVER_LICENCE_PLAN_MIX',
    },
    { name: 'Pro once every Basic licence expired', kind: 'pro', held: () => [lic('basic-1', { act: T0 })], at: M(13) },
    { name: 'API licence next to Basic (add-on)', kind: 'api', held: () => [lic('basic-1', { act: T0 })], at: M(1) },
    { name: 'Basic into a Free account (upgrade path)', kind: 'basic-1', held: () => [lic('free', { act: T0 })], at: M(1) },
    {
      name: 'Free into an account with an active paid licence',
      kind: 'free',
      held: () => [lic('basic-1', { act: T0 })],
      at: M(1),
      error: 'SERVER_LICENCE_FREE_NOT_COMBINABLE',
    },
    { name: 'Free renewal next to an active Free', kind: 'free', held: () => [lic('free', { act: T0 })], at: M(11) },
    { name: 'API licence into a Free account (add-on)', kind: 'api', held: () => [lic('free', { act: T0 })], at: M(1) },
    { name: 'Free into an account with an active API licence', kind: 'free', held: () => [lic('api', { act: T0 })], at: M(1) },
  ];
  it.each(cases)('$name', ({ kind, held, at, error }) => {
    const code = errorCode(() => checkRedeem({ kind, issuedAt: T0, redeemedAt: null }, held(), at));
    expect(code).toBe(error);
  });

  it('a code can be redeemed once', () => {
    expect(errorCode(() => checkRedeem({ kind: 'pro', issuedAt: T0, redeemedAt: T0 }, [], M(1)))).toBe(
      'SERVER_LICENCE_CODE_REDEEMED',
    );
  });
});

describe('activation', () => {
  const cases: {
    name: string;
    l: () => LicenceFacts;
    others?: () => LicenceFacts[];
    at: number;
    now: number;
    error?: string;
  }[] = [
    { name: 'now', l: () => lic('basic-1'), at: M(1), now: M(1) },
    { name: 'at a later date', l: () => lic('basic-1'), at: M(3), now: M(1) },
    { name: 'in the past', l: () => lic('basic-1'), at: M(1) - 1, now: M(1), error: 'SERVER_LICENCE_ACTIVATION_DATE' },
    {
      name: 'after the stock deadline',
      l: () => lic('basic-1'),
      at: M(24),
      now: M(1),
      error: 'SERVER_LICENCE_ACTIVATION_DATE',
    },
    { name: 'twice', l: () => lic('basic-1', { act: M(1) }), at: M(2), now: M(2), error: 'SERVER_LICENCE_ALREADY_ACTIVATED' },
    { name: 'expired in stock', l: () => lic('basic-1'), at: M(25), now: M(25), error: 'SERVER_LICENCE_NOT_ACTIVATABLE' },
    {
      name: 'Free while a paid licence is in force',
      l: () => lic('free'),
      others: () => [lic('basic-1', { act: T0 })],
      at: M(1),
      now: M(1),
      error: 'SERVER_LICENCE_NOT_ACTIVATABLE',
    },
  ];
  it.each(cases)('$name', ({ l, others, at, now, error }) => {
    const x = l();
    const all = [x, ...(others?.() ?? [])];
    expect(errorCode(() => checkActivate(x, all, at, now))).toBe(error);
  });

  it('sets a 12-month term from the activation date', () => {
    const x = lic('pro');
    expect(checkActivate(x, [x], M(3), M(1))).toBe(M(15));
  });
});

describe('Free invalidation and entitlement', () => {
  it('activating a paid licence invalidates Free at that moment, also when scheduled', () => {
    const free = lic('free', { act: T0 });
    const paid = lic('basic-1', { act: M(2) });
    const all = [free, paid];
    expect(licenceStatus(free, all, M(2) - 1)).toBe('active');
    expect(entitlement(all, M(2) - 1)).toMatchObject({ plan: 'free', seats: 1000 });
    expect(licenceStatus(free, all, M(2))).toBe('invalidated');
    expect(entitlement(all, M(2))).toMatchObject({ plan: 'basic', seats: 1 });
    // It stays invalid for the rest of its term, then expires; no plan once the paid one expires.
    expect(licenceStatus(free, all, M(11))).toBe('invalidated');
    expect(licenceStatus(free, all, M(12))).toBe('expired');
    expect(entitlement(all, M(14)).plan).toBe(null);
  });

  it('an active API licence (an add-on, not a plan) leaves Free valid: the account keeps its 1,000 seats', () => {
    const free = lic('free', { act: T0 });
    const api = lic('api', { act: M(1) });
    expect(licenceStatus(free, [free, api], M(2))).toBe('active');
    expect(entitlement([free, api], M(2))).toMatchObject({ plan: 'free', seats: 1000, api: true });
    expect(dueLicenceEvents(free, [free, api], M(2)).map((e) => e.type)).toEqual(['licence.activated']);
    expect(errorCode(() => checkActivate(lic('free'), [api], M(2), M(2)))).toBeUndefined();
  });

  it('a paid licence only in stock leaves Free valid', () => {
    const free = lic('free', { act: T0 });
    const paid = lic('basic-25');
    expect(licenceStatus(free, [free, paid], M(3))).toBe('active');
  });

  const cases: { name: string; ls: () => LicenceFacts[]; at: number; expected: object }[] = [
    {
      name: '10 × Basic 1 add up',
      ls: () => Array.from({ length: 10 }, () => lic('basic-1', { act: T0 })),
      at: M(1),
      expected: { plan: 'basic', seats: 10, api: false },
    },
    {
      name: 'Basic 25 + Basic 1',
      ls: () => [lic('basic-25', { act: T0 }), lic('basic-1', { act: T0 })],
      at: M(1),
      expected: { plan: 'basic', seats: 26 },
    },
    { name: 'Pro covers 100 per code', ls: () => [lic('pro', { act: T0 }), lic('pro', { act: T0 })], at: M(1), expected: { plan: 'pro', seats: 200 } },
    {
      name: 'Free never adds up',
      ls: () => [lic('free', { act: T0 }), lic('free', { act: T0 })],
      at: M(1),
      expected: { plan: 'free', seats: 1000, registrationLimit: null },
    },
    {
      name: 'API licence alone: no plan, API on',
      ls: () => [lic('api', { act: T0 })],
      at: M(1),
      expected: { plan: null, seats: 0, api: true },
    },
    { name: 'everything expired', ls: () => [lic('basic-25', { act: T0 })], at: M(12), expected: { plan: null, seats: 0 } },
    { name: 'scheduled, not yet active', ls: () => [lic('basic-25', { act: M(2) })], at: M(1), expected: { plan: null } },
  ];
  it.each(cases)('$name', ({ ls, at, expected }) => {
    expect(entitlement(ls(), at)).toMatchObject(expected);
  });

  it('Free has none of the Basic features; Basic and Pro have all', () => {
    expect([...entitlement([lic('free', { act: T0 })], M(1)).features]).toEqual([]);
    for (const kind of ['basic-1', 'pro'] as const) {
      expect([...entitlement([lic(kind, { act: T0 })], M(1)).features].sort()).toEqual(
        ['auditLog', 'certificateStore', 'configurationTemplates', 'customFields', 'multiUser'].sort(),
      );
    }
  });
});

describe('expiry notices', () => {
  const l = lic('basic-1', { act: T0 });
  const exp = l.expiresAt!;
  const cases: { daysBefore: number; expected: string | null }[] = [
    { daysBefore: 31, expected: null },
    { daysBefore: 30, expected: 'notice:0' },
    { daysBefore: 24, expected: 'notice:0' },
    { daysBefore: 23, expected: 'notice:1' },
    { daysBefore: 16, expected: 'notice:2' },
    { daysBefore: 9, expected: 'notice:3' },
    { daysBefore: 2, expected: 'notice:4' },
    { daysBefore: 0, expected: 'expired' },
  ];
  it.each(cases)('$daysBefore days before expiry → $expected', ({ daysBefore, expected }) => {
    const events = dueLicenceEvents(l, [l], exp - daysBefore * DAY).filter((e) => e.type !== 'licence.activated');
    expect(events.map((e) => e.dedupeKey.slice(l.uuid.length + 1))).toEqual(expected ? [expected] : []);
  });
});
