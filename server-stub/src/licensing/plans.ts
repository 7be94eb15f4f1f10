/**
 * The licence articles and the plans they belong to, as the reference documents describe them, plus
 * our own definition of Pro (the reference does not say how many devices a Pro code covers; see
 * docs/licensing.md).
 */
export const LICENCE_KINDS = ['free', 'basic-1', 'basic-25', 'pro', 'api'] as const;
export type LicenceKind = (typeof LICENCE_KINDS)[number];

/** A plan is chosen per account; the API licence is an add-on, not a plan. */
export type PlanFamily = 'free' | 'basic' | 'pro';

export interface LicenceArticle {
  readonly kind: LicenceKind;
  /** Plan family, or `null` for the API add-on. */
  readonly plan: PlanFamily | null;
  /** Devices this licence lets the account manage concurrently. */
  readonly seats: number;
  readonly paid: boolean;
  readonly label: string;
}

export const ARTICLES: Readonly<Record<LicenceKind, LicenceArticle>> = {
  free: { kind: 'free', plan: 'free', seats: 1000, paid: false, label: 'Cloud Free (up to 1,000 devices)' },
  'basic-1': { kind: 'basic-1', plan: 'basic', seats: 1, paid: true, label: 'Cloud Basic 1' },
  'basic-25': { kind: 'basic-25', plan: 'basic', seats: 25, paid: true, label: 'Cloud Basic 25' },
  pro: { kind: 'pro', plan: 'pro', seats: 100, paid: true, label: 'Cloud Pro 100 (our definition)' },
  api: { kind: 'api', plan: null, seats: 0, paid: true, label: 'API licence' },
};

export const FEATURES = [
  'multiUser',
  'auditLog',
  'configurationTemplates',
  'certificateStore',
  'customFields',
] as const;
export type Feature = (typeof FEATURES)[number];

export interface PlanDefinition {
  readonly family: PlanFamily;
  readonly features: ReadonlySet<Feature>;
  /** Most devices an account on this plan may register (`null` = no fixed limit). */
  readonly registrationLimit: number | null;
  /** Free licences never add up: the account limit is the article's, however many are active. */
  readonly seatsCombine: boolean;
}

export const PLANS: Readonly<Record<PlanFamily, PlanDefinition>> = {
  // The reference also caps Free at 1,000 *registered* devices; the demo registers 1,200 devices
  // on Free and expects 1,000 admitted and 200 rejected by floating admission. The demo wins: the
  // 1,000 is the seat count (devices managed at once); registration is not capped (docs/licensing.md).
  free: { family: 'free', features: new Set(), registrationLimit: null, seatsCombine: false },
  basic: { family: 'basic', features: new Set(FEATURES), registrationLimit: null, seatsCombine: true },
  pro: { family: 'pro', features: new Set(FEATURES), registrationLimit: null, seatsCombine: true },
};

/** Licence term from activation, and how long an issued code may wait to be redeemed/activated. */
export const TERM_MONTHS = 12;
export const STOCK_MONTHS = 24;
/** Expiry notices: the first this many days before expiry, then every `NOTICE_EVERY_DAYS`. */
export const NOTICE_FIRST_DAYS = 30;
export const NOTICE_EVERY_DAYS = 7;

export function isLicenceKind(value: string): value is LicenceKind {
  return (LICENCE_KINDS as readonly string[]).includes(value);
}
