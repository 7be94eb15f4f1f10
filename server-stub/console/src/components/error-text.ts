import type { TFunction } from 'i18next';
import { ApiError } from '../api.js';

/**
 * A translated message for an error of the API by its stable code: the namespace's own text for
 * the code (`errors.<CODE>`), else the common one, else a general message naming the code.
 */
export function errorText(t: TFunction, err: unknown): string {
  const code = err instanceof ApiError ? err.code : 'CONSOLE_UNEXPECTED';
  return t([`errors.${code}`, `common:errors.${code}`], { defaultValue: t('common:errors.generic', { code }) });
}
