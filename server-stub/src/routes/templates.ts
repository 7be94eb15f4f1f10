import { Type } from '@sinclair/typebox';
import { DEVICE_FIELDS } from '../templates/render.js';
import type { TemplateRow } from '../store/templates.js';
import { defineRoute, notFound } from './route.js';
import { idPage, iso, NullableTimestamp, Page, PageQuery, Timestamp, UUID_PATTERN, UuidParam } from './schemas.js';

const KINDS = ['ascii-configuration', 'configuration-profile', 'container-configuration'] as const;
const Kind = Type.Union(KINDS.map((k) => Type.Literal(k)), {
  description: 'The packet component the rendered text becomes (FILETYPE AsciiConfiguration, ConfigurationProfile, ...).',
});

const PLACEHOLDER_HELP =
  `Placeholders: {{device.<${DEVICE_FIELDS.join('|')}>}}, {{custom.<key>}} (custom fields), `
  + '{{group.<key>}} (template values of the device\'s group).';

const Template = Type.Object({
  uuid: Type.String(),
  name: Type.String(),
  kind: Kind,
  fileName: Type.String(),
  description: Type.String(),
  body: Type.String(),
  createdAt: Timestamp,
  updatedAt: NullableTimestamp,
});

const templateView = (t: TemplateRow) => ({
  uuid: t.uuid,
  name: t.name,
  kind: t.kind,
  fileName: t.file_name,
  description: t.description,
  body: t.body,
  createdAt: iso(t.created_at),
  updatedAt: iso(t.updated_at),
});

const fields = {
  name: Type.String({ minLength: 1, maxLength: 100 }),
  kind: Kind,
  fileName: Type.String({ minLength: 1, maxLength: 255, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
  description: Type.String({ maxLength: 256, 'x-text': 'multiline' }),
  body: Type.String({ minLength: 1, maxLength: 262_144, description: PLACEHOLDER_HELP, 'x-text': 'document' }),
};

const Values = Type.Record(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_]{0,63}$' }), Type.String({ maxLength: 4096 }), {
  maxProperties: 200,
  description: 'Values of {{group.<key>}} placeholders for the devices of this group.',
});

const common = { tags: ['templates'], feature: 'configurationTemplates' } as const;

export const templateRoutes = [
  defineRoute({
    ...common,
    method: 'GET',
    url: '/api/configuration-templates',
    summary: 'Configuration templates (Basic and Pro)',
    access: 'viewer',
    querystring: Type.Object(PageQuery, { additionalProperties: false }),
    response: Page(Template),
    handler: ({ ctx, query, services }) =>
      idPage((afterId, limit) => services.templates.repo(ctx.scope).list({ afterId, limit }), query, services.config, templateView),
  }),
  defineRoute({
    ...common,
    method: 'POST',
    url: '/api/configuration-templates',
    summary: `Create a configuration template. ${PLACEHOLDER_HELP}`,
    access: 'operator',
    status: 201,
    body: Type.Object(
      {
        name: fields.name,
        body: fields.body,
        kind: Type.Optional(fields.kind),
        fileName: Type.Optional(fields.fileName),
        description: Type.Optional(fields.description),
      },
      { additionalProperties: false },
    ),
    response: Template,
    handler: ({ ctx, body, services }) =>
      templateView(
        services.templates.create(ctx.scope, {
          name: body.name,
          body: body.body,
          kind: body.kind ?? 'ascii-configuration',
          fileName: body.fileName ?? 'config.txt',
          description: body.description ?? '',
        }),
      ),
  }),
  defineRoute({
    ...common,
    method: 'GET',
    url: '/api/configuration-templates/{uuid}',
    summary: 'One configuration template',
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'template' },
    response: Template,
    handler: ({ ctx, params, services }) => templateView(services.templates.repo(ctx.scope).byUuid(params.uuid) ?? notFound()),
  }),
  defineRoute({
    ...common,
    method: 'PATCH',
    url: '/api/configuration-templates/{uuid}',
    summary: 'Change a configuration template (running template jobs keep the version they started with)',
    access: 'operator',
    params: UuidParam,
    resources: { uuid: 'template' },
    body: Type.Object(
      {
        name: Type.Optional(fields.name),
        body: Type.Optional(fields.body),
        kind: Type.Optional(fields.kind),
        fileName: Type.Optional(fields.fileName),
        description: Type.Optional(fields.description),
      },
      { additionalProperties: false },
    ),
    response: Template,
    handler: ({ ctx, params, body, services }) => templateView(services.templates.update(ctx.scope, params.uuid, body)),
  }),
  defineRoute({
    ...common,
    method: 'DELETE',
    url: '/api/configuration-templates/{uuid}',
    summary: 'Delete a configuration template',
    access: 'operator',
    params: UuidParam,
    resources: { uuid: 'template' },
    status: 204,
    handler: ({ ctx, params, services }) => services.templates.delete(ctx.scope, params.uuid),
  }),
  defineRoute({
    ...common,
    method: 'POST',
    url: '/api/configuration-templates/{uuid}/preview',
    summary:
      'Render a template for one device (nothing is stored or sent); a missing value is SERVER_TEMPLATE_VALUE_MISSING '
      + 'with `details.missing`',
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'template' },
    body: Type.Object({ deviceUuid: Type.String({ pattern: UUID_PATTERN }) }, { additionalProperties: false }),
    response: Type.Object({
      templateUuid: Type.String(),
      deviceUuid: Type.String(),
      kind: Kind,
      fileName: Type.String(),
      placeholders: Type.Array(Type.String()),
      rendered: Type.String(),
    }),
    handler: ({ ctx, params, body, services }) => services.templates.preview(ctx.scope, params.uuid, body.deviceUuid),
  }),
  defineRoute({
    ...common,
    method: 'GET',
    url: '/api/inventory/device-groups/{uuid}/template-values',
    summary: 'Template values of a device group (the {{group.<key>}} placeholders)',
    access: 'viewer',
    params: UuidParam,
    resources: { uuid: 'group' },
    response: Type.Object({ values: Values }),
    handler: ({ ctx, params, services }) => ({ values: services.templates.groupValues(ctx.scope, params.uuid) }),
  }),
  defineRoute({
    ...common,
    method: 'PUT',
    url: '/api/inventory/device-groups/{uuid}/template-values',
    summary: 'Set (replace) the template values of a device group',
    access: 'operator',
    params: UuidParam,
    resources: { uuid: 'group' },
    body: Type.Object({ values: Values }, { additionalProperties: false }),
    response: Type.Object({ values: Values }),
    handler: ({ ctx, params, body, services }) => ({
      values: services.templates.setGroupValues(ctx.scope, params.uuid, body.values),
    }),
  }),
];
