import { Buffer } from 'node:buffer';
import { type TSchema, Type } from '@sinclair/typebox';
import { AppError } from '../errors.js';

export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

export const UuidParam = Type.Object({ uuid: Type.String({ pattern: UUID_PATTERN }) }, { additionalProperties: false });

export const ErrorBody = Type.Object(
  {
    code: Type.String({ description: 'Stable error code (see docs/errors.md).' }),
    message: Type.String(),
    details: Type.Optional(Type.Unknown()),
    retryable: Type.Optional(Type.Boolean({ description: 'True when the same request may succeed later.' })),
  },
  { $id: 'ErrorBody' },
);

export const Timestamp = Type.String({ format: 'date-time' });
export const NullableTimestamp = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);

export function iso(ms: number): string;
export function iso(ms: number | null): string | null;
export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, description: 'Page size; values above the maximum are capped.' })),
  cursor: Type.Optional(Type.String({ maxLength: 512, description: 'The `nextCursor` of the previous page.' })),
};

export function Page<T extends TSchema>(item: T) {
  return Type.Object({
    items: Type.Array(item),
    nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'Cursor of the next page, null at the end.' }),
  });
}

/** The answer of the CSV imports (licences, devices). */
export const ImportReport = Type.Object({
  rows: Type.Integer(),
  imported: Type.Integer(),
  failed: Type.Integer(),
  partial: Type.Boolean(),
  errors: Type.Array(
    Type.Object({
      line: Type.Integer(),
      code: Type.String(),
      message: Type.String(),
      details: Type.Optional(
        Type.Object(
          {
            in: Type.Literal('csv'),
            field: Type.String({ description: 'The column as a JSON pointer (`/latitude`, `/customFields/site`); empty for the row as a whole.' }),
            rule: Type.String({ description: 'The broken rule, as in SERVER_VALIDATION details (docs/errors.md).' }),
            limit: Type.Optional(Type.Number()),
          },
          { description: 'For SERVER_VALIDATION and SERVER_CSV_INVALID: which column breaks which rule.' },
        ),
      ),
    }),
  ),
});

export const ImportQuery = Type.Object(
  { partial: Type.Optional(Type.Boolean({ description: 'Import the valid rows even if others fail.' })) },
  { additionalProperties: false },
);

export function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

/** Decodes a cursor made by `encodeCursor`, checked by `valid`; anything else is SERVER_INVALID_CURSOR. */
export function decodeCursor<T>(cursor: string | undefined, valid: (v: unknown) => v is T): T | undefined {
  if (cursor === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (valid(v)) return v;
  } catch {
    // fall through
  }
  throw new AppError('SERVER_INVALID_CURSOR');
}

function isIdCursor(v: unknown): v is { id: number } {
  return typeof v === 'object' && v !== null && Number.isSafeInteger((v as { id: unknown }).id);
}

export interface PageSize {
  readonly pageSizeDefault: number;
  readonly pageSizeMax: number;
}

/** The page size asked for, capped at the configured maximum. */
export function pageLimit(query: { limit?: number }, size: PageSize): number {
  return Math.min(query.limit ?? size.pageSizeDefault, size.pageSizeMax);
}

/** Turns `limit + 1` fetched rows into a page and the cursor after its last row (if more follow). */
export function toPage<R, O>(
  rows: readonly R[],
  limit: number,
  map: (r: R) => O,
  cursorOf: (last: R) => unknown,
): { items: O[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    items: page.map(map),
    nextCursor: rows.length > limit && last !== undefined ? encodeCursor(cursorOf(last)) : null,
  };
}

/** Pages of a list ordered by internal id (ascending). */
export function idPage<R extends { id: number }, O>(
  fetch: (afterId: number, limit: number) => R[],
  query: { limit?: number; cursor?: string },
  size: PageSize,
  map: (r: R) => O,
): { items: O[]; nextCursor: string | null } {
  const limit = pageLimit(query, size);
  const after = decodeCursor(query.cursor, isIdCursor)?.id ?? 0;
  return toPage(fetch(after, limit + 1), limit, map, (last) => ({ id: last.id }));
}
