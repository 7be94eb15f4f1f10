import type { TFunction } from 'i18next';
import { ApiError } from '../api.js';

/**
 * A translated message for a stable error code of the API: the namespace's own text for the code
 * (`errors.<CODE>`), else the common one, else a general message naming the code.
 */
export function codeText(t: TFunction, code: string): string {
  return t([`errors.${code}`, `common:errors.${code}`], { defaultValue: t('common:errors.generic', { code }) });
}

/** A translated message for an error of the API, by its stable code (never the server's English text). */
export function errorText(t: TFunction, err: unknown): string {
  return codeText(t, err instanceof ApiError ? err.code : 'CONSOLE_UNEXPECTED');
}
