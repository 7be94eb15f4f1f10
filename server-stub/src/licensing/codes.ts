import { randomBytes } from 'node:crypto';

/** Licence activation codes: 12 hex digits in three groups, e.g. `96D9-3718-59E5`. */
export const CODE_PATTERN = /^[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}$/;

export function generateCode(): string {
  const hex = randomBytes(6).toString('hex').toUpperCase();
  return `${hex.slice(0, 4)}-${hex.slice(4, 8)}-${hex.slice(8, 12)}`;
}

/** Upper-cases and trims; returns `undefined` when the result is not a well-formed code. */
export function normaliseCode(input: string): string | undefined {
  const code = input.trim().toUpperCase();
  return CODE_PATTERN.test(code) ? code : undefined;
}
