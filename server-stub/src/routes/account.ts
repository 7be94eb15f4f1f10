import { Type } from '@sinclair/typebox';
import type { AccountRow } from '../store/accounts.js';
import { decodeCursor, iso, Page, PageQuery, pageLimit, Timestamp, toPage } from './schemas.js';
import { defineRoute } from './route.js';

const CompanySettings = Type.Object(
  {
    companyName: Type.Optional(Type.String({ maxLength: 200 })),
    street: Type.Optional(Type.String({ maxLength: 200 })),
    postalCode: Type.Optional(Type.String({ maxLength: 20 })),
    city: Type.Optional(Type.String({ maxLength: 100 })),
    country: Type.Optional(Type.String({ maxLength: 100 })),
    vatId: Type.Optional(Type.String({ maxLength: 50 })),
    contactEmail: Type.Optional(Type.String({ format: 'email', maxLength: 200 })),
    contactPhone: Type.Optional(Type.String({ maxLength: 50 })),
    analyticsConsent: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const Account = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  settings: CompanySettings,
  createdAt: Timestamp,
});

const Plan = Type.Object({
  plan: Type.Union([Type.Literal('free'), Type.Literal('basic'), Type.Literal('pro'), Type.Null()]),
  seats: Type.Integer(),
  features: Type.Array(Type.String()),
  registrationLimit: Type.Union([Type.Integer(), Type.Null()]),
  api: Type.Boolean(),
  devices: Type.Integer(),
  managedDevices: Type.Integer(),
});

const Event = Type.Object({
  id: Type.Integer(),
  type: Type.String(),
  subject: Type.Union([Type.String(), Type.Null()]),
  data: Type.Record(Type.String(), Type.Unknown()),
  at: Timestamp,
});

function accountView(a: AccountRow) {
  return { uuid: a.uuid, name: a.name, settings: JSON.parse(a.settings), createdAt: iso(a.created_at) };
}

function isBefore(v: unknown): v is { before: number } {
  return typeof v === 'object' && v !== null && Number.isSafeInteger((v as { before: unknown }).before);
}

export const accountRoutes = [
  defineRoute({
    method: 'GET',
    url: '/api/account',
    summary: 'The company account',
    tags: ['account'],
    access: 'viewer',
    response: Account,
    handler: ({ ctx }) => accountView(ctx.scope.account()),
  }),
  defineRoute({
    method: 'PATCH',
    url: '/api/account',
    summary: 'Update the company name and settings',
    tags: ['account'],
    access: 'admin',
    body: Type.Object(
      { name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })), settings: Type.Optional(CompanySettings) },
      { additionalProperties: false },
    ),
    response: Account,
    handler: ({ ctx, body, services }) => {
      const consent = ctx.scope.write(() => {
        const cur = ctx.scope.account();
        const before = (JSON.parse(cur.settings) as { analyticsConsent?: unknown }).analyticsConsent === true;
        const settings = body.settings ? { ...JSON.parse(cur.settings), ...body.settings } : undefined;
        ctx.scope.updateAccount({ ...(body.name ? { name: body.name } : {}), ...(settings ? { settings } : {}) });
        const after = settings ? settings.analyticsConsent === true : before;
        return { before, after, accountId: cur.uuid };
      });
      // Connected devices of the account learn the new consent at once (a `settings` message).
      if (consent.before !== consent.after) {
        services.analytics.announce(consent.accountId, consent.after);
      }
      return accountView(ctx.scope.account());
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/account/plan',
    summary: 'Plan in force, seats and features (from the active licences)',
    tags: ['account', 'licences'],
    access: 'viewer',
    response: Plan,
    handler: ({ ctx, services }) => {
      const ent = services.licensing.entitlement(ctx.scope);
      return {
        plan: ent.plan,
        seats: ent.seats,
        features: [...ent.features],
        registrationLimit: ent.registrationLimit,
        api: ent.api,
        devices: ctx.scope.devices.count(),
        managedDevices: ctx.scope.leases.managedCount(),
      };
    },
  }),
  defineRoute({
    method: 'GET',
    url: '/api/account/events',
    summary: 'Account events (licence notices, admission changes), newest first',
    tags: ['account'],
    access: 'viewer',
    querystring: Type.Object(
      { ...PageQuery, type: Type.Optional(Type.String({ maxLength: 100 })) },
      { additionalProperties: false },
    ),
    response: Page(Event),
    handler: ({ ctx, query, services }) => {
      const limit = pageLimit(query, services.config);
      const before = decodeCursor(query.cursor, isBefore)?.before;
      const rows = ctx.scope.events.list({
        limit: limit + 1,
        ...(before === undefined ? {} : { before }),
        ...(query.type === undefined ? {} : { type: query.type }),
      });
      return toPage(rows, limit, (e) => ({ ...e, at: iso(e.at) }), (last) => ({ before: last.id }));
    },
  }),
];
