import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { type ValueError, ValueErrorType } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';
import type { FastifySchemaCompiler } from 'fastify';
import { AppError } from './errors.js';

/**
 * Request validation with TypeBox's compiler instead of Ajv's defaults: bodies are checked exactly
 * (no type coercion: `"5"` is not a number, unknown properties are refused), while path and query
 * strings, which are text by nature, are converted to the declared types first. Defaults declared
 * in a schema are filled in.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', (v) => UUID.test(v));
if (!FormatRegistry.Has('date-time')) {
  FormatRegistry.Set('date-time', (v) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(v) && !Number.isNaN(Date.parse(v)));
}
if (!FormatRegistry.Has('email')) FormatRegistry.Set('email', (v) => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v));

/**
 * Text rules for every string a request carries (body, query, path). A string schema names its
 * kind with `'x-text'`; without one a string is a single-line name. See docs/text-rules.md.
 * - `line` (default): no control character (C0, DEL, C1, U+2028/U+2029), no bidi override or
 *   isolate (U+202A-U+202E, U+2066-U+2069: they make a name display other than it compares).
 * - `multiline`: free text; as `line`, but LF and TAB are allowed.
 * - `document`: a file carried as text (a PEM, a configuration); as `multiline`, and CR too.
 * - `password`: anything printable; bidi characters allowed (never displayed), controls not.
 * No kind allows a lone surrogate: it cannot be stored or compared as UTF-8.
 */
export type TextKind = 'line' | 'multiline' | 'document' | 'password';

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const BIDI_CONTROL = /[\u202A-\u202E\u2066-\u2069]/;

/** Why `text` breaks the rules of `kind`, or undefined when it is acceptable. */
export function textViolation(text: string, kind: TextKind): string | undefined {
  if (LONE_SURROGATE.test(text)) return 'contains a lone surrogate (not encodable as UTF-8)';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const control = c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029;
    if (!control) continue;
    const multiline = kind === 'multiline' || kind === 'document';
    if ((c === 0x0a || c === 0x09) && multiline) continue;
    if (c === 0x0d && kind === 'document') continue;
    const hex = c.toString(16).toUpperCase().padStart(4, '0');
    return `contains the control character U+${hex}${kind === 'line' ? ' (single-line text)' : ''}`;
  }
  if (kind !== 'password') {
    const bidi = BIDI_CONTROL.exec(text);
    if (bidi) return `contains the bidi control U+${bidi[0].charCodeAt(0).toString(16).toUpperCase()}`;
  }
  return undefined;
}

type Schema = TSchema & {
  type?: unknown;
  anyOf?: Schema[];
  items?: Schema;
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  patternProperties?: Record<string, Schema>;
  'x-text'?: TextKind;
};

/** Walks `value` along `schema` and returns the first string that breaks its text rule. */
export function findTextViolation(schema: Schema, value: unknown, path = ''): string | undefined {
  if (typeof value === 'string') {
    const stringSchema = schema.type === 'string' ? schema : schema.anyOf?.find((s) => s.type === 'string');
    if (!stringSchema) return undefined;
    const why = textViolation(value, stringSchema['x-text'] ?? 'line');
    return why ? `${path || '/'}: ${why}` : undefined;
  }
  if (schema.anyOf) {
    const member = schema.anyOf.find((s) => Value.Check(s, value));
    return member ? findTextViolation(member, value, path) : undefined;
  }
  if (Array.isArray(value)) {
    if (!schema.items) return undefined;
    for (let i = 0; i < value.length; i++) {
      const why = findTextViolation(schema.items, value[i], `${path}/${i}`);
      if (why) return why;
    }
    return undefined;
  }
  if (value !== null && typeof value === 'object' && schema.type === 'object') {
    const open =
      typeof schema.additionalProperties === 'object'
        ? schema.additionalProperties
        : Object.values(schema.patternProperties ?? {})[0];
    for (const [key, item] of Object.entries(value)) {
      const known = schema.properties?.[key];
      if (!known && open) {
        // Keys a caller chooses (a record's keys) are names too.
        const why = textViolation(key, 'line');
        if (why) return `${path}/${key}: the key ${why}`;
      }
      const sub = known ?? open;
      const why = sub ? findTextViolation(sub, item, `${path}/${key}`) : undefined;
      if (why) return why;
    }
  }
  return undefined;
}

/**
 * The first broken rule of a refused request, as `details` of SERVER_VALIDATION, so that a client
 * can say what is wrong in its user's language without parsing the English message:
 * `in` (body, querystring, params, headers), `field` (JSON pointer into that part; '' for the
 * whole), `rule` (one of VALIDATION_RULES) and, for the rules with a bound, `limit`.
 */
export interface ValidationDetails {
  readonly in: string;
  readonly field: string;
  readonly rule: ValidationRule;
  readonly limit?: number;
}

export const VALIDATION_RULES = [
  'type',
  'required',
  'unknownProperty',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'minItems',
  'maxItems',
  'maxProperties',
  'oneOf',
  'text',
  'invalid',
] as const;
export type ValidationRule = (typeof VALIDATION_RULES)[number];

/**
 * TypeBox's error kinds that carry a bound: the schema keyword holding the bound, the rule it is
 * reported as (an exclusive bound is still a minimum or a maximum), numbers and integers alike.
 */
const BOUNDS: ReadonlyArray<readonly [keyword: string, rule: ValidationRule, kinds: readonly ValueErrorType[]]> = [
  ['minimum', 'minimum', [ValueErrorType.NumberMinimum, ValueErrorType.IntegerMinimum]],
  ['exclusiveMinimum', 'minimum', [ValueErrorType.NumberExclusiveMinimum, ValueErrorType.IntegerExclusiveMinimum]],
  ['maximum', 'maximum', [ValueErrorType.NumberMaximum, ValueErrorType.IntegerMaximum]],
  ['exclusiveMaximum', 'maximum', [ValueErrorType.NumberExclusiveMaximum, ValueErrorType.IntegerExclusiveMaximum]],
  ['minLength', 'minLength', [ValueErrorType.StringMinLength]],
  ['maxLength', 'maxLength', [ValueErrorType.StringMaxLength]],
  ['minItems', 'minItems', [ValueErrorType.ArrayMinItems]],
  ['maxItems', 'maxItems', [ValueErrorType.ArrayMaxItems]],
  ['maxProperties', 'maxProperties', [ValueErrorType.ObjectMaxProperties]],
];

/** By error kind: the rule and the schema keyword holding the bound. */
const BOUNDED: ReadonlyMap<ValueErrorType, readonly [ValidationRule, string]> = new Map(
  BOUNDS.flatMap(([keyword, rule, kinds]) => kinds.map((kind) => [kind, [rule, keyword]] as const)),
);

const OTHER: ReadonlyMap<ValueErrorType, ValidationRule> = new Map([
  [ValueErrorType.ObjectRequiredProperty, 'required'],
  [ValueErrorType.ObjectAdditionalProperties, 'unknownProperty'],
  [ValueErrorType.StringPattern, 'pattern'],
  [ValueErrorType.StringFormat, 'format'],
  [ValueErrorType.StringFormatUnknown, 'format'],
  [ValueErrorType.Literal, 'oneOf'],
  ...[
    ValueErrorType.Array,
    ValueErrorType.Boolean,
    ValueErrorType.Integer,
    ValueErrorType.Null,
    ValueErrorType.Number,
    ValueErrorType.Object,
    ValueErrorType.String,
  ].map((t): [ValueErrorType, ValidationRule] => [t, 'type']),
]);

/**
 * Within a union (`number | null`, one of several literals) the error of the member that fits the
 * value's kind says more than "matches no member": a latitude of 95 breaks `maximum`, not `type`.
 */
function mostSpecific(error: ValueError): ValueError {
  if (error.type !== ValueErrorType.Union) return error;
  const subs = error.errors.map((it) => it.First()).filter((e): e is ValueError => e !== undefined);
  const fitting = subs.find((e) => OTHER.get(e.type) !== 'type' && e.type !== ValueErrorType.Union);
  if (fitting) return mostSpecific(fitting);
  if (subs.length > 0 && subs.every((e) => e.type === ValueErrorType.Literal)) return subs[0]!;
  return error;
}

export function validationDetails(part: string, error: ValueError | undefined): ValidationDetails {
  if (!error) return { in: part, field: '', rule: 'invalid' };
  const e = mostSpecific(error);
  const bounded = BOUNDED.get(e.type);
  if (bounded) {
    const limit = (e.schema as Record<string, unknown>)[bounded[1]];
    return { in: part, field: e.path, rule: bounded[0], ...(typeof limit === 'number' ? { limit } : {}) };
  }
  return { in: part, field: e.path, rule: OTHER.get(e.type) ?? (e.type === ValueErrorType.Union ? 'type' : 'invalid') };
}

export const typeboxValidatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = TypeCompiler.Compile(schema);
  const convert = httpPart !== 'body';
  const part = httpPart ?? 'request';
  return (data: unknown) => {
    // A request without a body meets an object schema as `{}` (its required properties still
    // apply). A JSON `null` body never gets here: the JSON parser refuses it (http-edge.ts).
    let value = data ?? (httpPart === 'body' ? {} : data);
    if (convert) value = Value.Convert(schema, Value.Clone(value ?? {}));
    value = Value.Default(schema, value);
    if (check.Check(value)) {
      const why = findTextViolation(schema as Schema, value);
      if (why) {
        const details: ValidationDetails = { in: part, field: why.slice(0, why.indexOf(': ')).replace(/^\/$/, ''), rule: 'text' };
        return { error: new AppError('SERVER_VALIDATION', `${part}${why}`, { details }) };
      }
      return { value };
    }
    const first = check.Errors(value).First();
    const where = first ? `${part}${first.path || ''}` : part;
    return { error: new AppError('SERVER_VALIDATION', `${where}: ${first?.message ?? 'invalid'}`, { details: validationDetails(part, first) }) };
  };
};
