import { AppError } from '../errors.js';

/**
 * Placeholders: `{{device.<field>}}`, `{{custom.<key>}}` (the device's custom fields) and
 * `{{group.<key>}}` (the template values of the device's group). Blanks inside the braces are
 * allowed. To keep the syntax small there is no escape: `{{` and `}}` occur only in placeholders.
 */
export const DEVICE_FIELDS = [
  'uuid',
  'serialNumber',
  'name',
  'location',
  'model',
  'firmware',
  'latitude',
  'longitude',
  'groupName',
] as const;
export type DeviceField = (typeof DEVICE_FIELDS)[number];

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;
const PATH = /^(device|custom|group)\.([A-Za-z][A-Za-z0-9_]{0,63})$/;

export interface Placeholder {
  /** As written, trimmed: `custom.site`. */
  readonly path: string;
  readonly namespace: 'device' | 'custom' | 'group';
  readonly key: string;
}

/** The values a template is rendered with for one device. */
export interface RenderContext {
  device: Partial<Record<DeviceField, string | number | null>>;
  custom: Record<string, string>;
  group: Record<string, string>;
}

/** Every placeholder of a template; a malformed or unknown one is SERVER_TEMPLATE_INVALID. */
export function placeholders(body: string): Placeholder[] {
  const out = new Map<string, Placeholder>();
  for (const m of body.matchAll(PLACEHOLDER)) {
    const path = m[1]!;
    const p = PATH.exec(path);
    if (!p || (p[1] === 'device' && !(DEVICE_FIELDS as readonly string[]).includes(p[2]!))) {
      throw new AppError('SERVER_TEMPLATE_INVALID', `Unknown placeholder {{${path.slice(0, 80)}}}.`, {
        details: { placeholder: path.slice(0, 80) },
      });
    }
    out.set(path, { path, namespace: p[1] as Placeholder['namespace'], key: p[2]! });
  }
  // Braces that do not form a placeholder are most likely a typo: refuse them too.
  const rest = body.replace(PLACEHOLDER, '');
  if (rest.includes('{{') || rest.includes('}}')) {
    throw new AppError('SERVER_TEMPLATE_INVALID', 'Unbalanced "{{" or "}}" in the template.', {
      details: { placeholder: null },
    });
  }
  return [...out.values()];
}

function valueOf(p: Placeholder, ctx: RenderContext): string | undefined {
  const v =
    p.namespace === 'device' ? ctx.device[p.key as DeviceField] : p.namespace === 'custom' ? ctx.custom[p.key] : ctx.group[p.key];
  if (v === undefined || v === null || v === '') return undefined;
  return String(v);
}

/**
 * Renders a template for one device. Every missing value is named in one
 * SERVER_TEMPLATE_VALUE_MISSING error (`details.missing`: the placeholder paths), so nothing is
 * ever rendered with a hole in it.
 */
export function render(body: string, ctx: RenderContext): string {
  const missing = placeholders(body)
    .filter((p) => valueOf(p, ctx) === undefined)
    .map((p) => p.path);
  if (missing.length > 0) {
    throw new AppError('SERVER_TEMPLATE_VALUE_MISSING', `No value for ${missing.map((m) => `{{${m}}}`).join(', ')}.`, {
      details: { missing },
    });
  }
  return body.replace(PLACEHOLDER, (_all, path: string) => {
    const p = PATH.exec(path)!;
    return valueOf({ path, namespace: p[1] as Placeholder['namespace'], key: p[2]! }, ctx)!;
  });
}
