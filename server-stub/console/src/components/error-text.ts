import type { TFunction } from 'i18next';
import { ApiError } from '../api.js';

/** What the server says about the first broken rule of a refused request (SERVER_VALIDATION). */
export interface ValidationDetails {
  readonly in: string;
  /** JSON pointer into the request part, e.g. `/connectionPingInterval` or `/customFields/site`. */
  readonly field: string;
  readonly rule: string;
  readonly limit?: number;
}

export function validationDetails(err: unknown): ValidationDetails | null {
  if (!(err instanceof ApiError) || err.code !== 'SERVER_VALIDATION') return null;
  const d = err.details as Partial<ValidationDetails> | undefined;
  if (!d || typeof d.field !== 'string' || typeof d.rule !== 'string') return null;
  return { in: String(d.in ?? ''), field: d.field, rule: d.rule, ...(typeof d.limit === 'number' ? { limit: d.limit } : {}) };
}

/**
 * How a form names its fields in a validation message. `label` gives the field's name for a
 * pointer (undefined: the form does not know it, and the general message is used); `message`
 * may replace the whole sentence for a field and rule (e.g. a custom field's name).
 */
export interface FieldNames {
  readonly label: (field: string) => string | undefined;
  readonly message?: (details: ValidationDetails) => string | undefined;
}

/**
 * A translated message for an error of the API by its stable code: the namespace's own text for
 * the code (`errors.<CODE>`), else the common one, else a general message naming the code. With
 * `fields`, a refused input says which field breaks which rule (common:validation.<rule>).
 */
export function errorText(t: TFunction, err: unknown, fields?: FieldNames): string {
  const details = fields ? validationDetails(err) : null;
  if (fields && details) {
    const own = fields.message?.(details);
    if (own !== undefined) return own;
    const label = fields.label(details.field);
    if (label !== undefined) {
      return t(`common:validation.${details.rule}`, {
        field: label,
        limit: details.limit,
        defaultValue: t('common:validation.invalid', { field: label }),
      });
    }
  }
  return codeText(t, err instanceof ApiError ? err.code : 'CONSOLE_UNEXPECTED');
}

/**
 * A translated message for a stable error code of the API (never the server's English text): the
 * namespace's own text for the code (`errors.<CODE>`), else the common one, else a general message
 * naming the code.
 */
export function codeText(t: TFunction, code: string): string {
  return t([`errors.${code}`, `common:errors.${code}`], { defaultValue: t('common:errors.generic', { code }) });
}
