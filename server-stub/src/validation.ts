import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
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

export const typeboxValidatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = TypeCompiler.Compile(schema);
  const convert = httpPart !== 'body';
  return (data: unknown) => {
    // A request without a body meets an object schema as `{}` (its required properties still apply).
    let value = data ?? (httpPart === 'body' ? {} : data);
    if (convert) value = Value.Convert(schema, Value.Clone(value ?? {}));
    value = Value.Default(schema, value);
    if (check.Check(value)) return { value };
    const first = check.Errors(value).First();
    const where = first ? `${httpPart ?? 'request'}${first.path || ''}` : (httpPart ?? 'request');
    return { error: new AppError('SERVER_VALIDATION', `${where}: ${first?.message ?? 'invalid'}`) };
  };
};
