/**
 * Translations: one i18next namespace per page plus `common` (shell, navigation, errors), in
 * locales/{en,de}/<namespace>.json, bundled into app.js. The language comes from the user's profile
 * once logged in, before that from the browser; switching it stores it in the profile.
 */
import i18next, { type TFunction } from 'i18next';
import { useEffect, useState } from 'preact/hooks';
import type { Language } from './api.js';
import deAccount from './locales/de/account.json';
import deCommon from './locales/de/common.json';
import deDashboard from './locales/de/dashboard.json';
import deDevices from './locales/de/devices.json';
import deFleet from './locales/de/fleet.json';
import deGroups from './locales/de/groups.json';
import deJobs from './locales/de/jobs.json';
import deLicences from './locales/de/licences.json';
import deLogin from './locales/de/login.json';
import deResources from './locales/de/resources.json';
import deDeviceImport from './locales/de/device-import.json';
import enAccount from './locales/en/account.json';
import enCommon from './locales/en/common.json';
import enDashboard from './locales/en/dashboard.json';
import enDevices from './locales/en/devices.json';
import enFleet from './locales/en/fleet.json';
import enGroups from './locales/en/groups.json';
import enJobs from './locales/en/jobs.json';
import enLicences from './locales/en/licences.json';
import enLogin from './locales/en/login.json';
import enResources from './locales/en/resources.json';
import enDeviceImport from './locales/en/device-import.json';

export const LANGUAGES: readonly Language[] = ['en', 'de'];

export const resources = {
  en: {
    common: enCommon,
    login: enLogin,
    dashboard: enDashboard,
    devices: enDevices,
    fleet: enFleet,
    groups: enGroups,
    resources: enResources,
    jobs: enJobs,
    licences: enLicences,
    account: enAccount,
    deviceImport: enDeviceImport,
  },
  de: {
    common: deCommon,
    login: deLogin,
    dashboard: deDashboard,
    devices: deDevices,
    fleet: deFleet,
    groups: deGroups,
    resources: deResources,
    jobs: deJobs,
    licences: deLicences,
    account: deAccount,
    deviceImport: deDeviceImport,
  },
} as const;

export type Namespace = keyof (typeof resources)['en'];

export const i18n = i18next.createInstance();

/** The browser's preferred language among ours (English when none matches). */
export function browserLanguage(): Language {
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = tag.toLowerCase().split('-')[0];
    if (base === 'de' || base === 'en') return base;
  }
  return 'en';
}

export function initI18n(language: Language = browserLanguage()): void {
  void i18n.init({
    resources,
    lng: language,
    fallbackLng: 'en',
    ns: Object.keys(resources.en),
    defaultNS: 'common',
    // Preact escapes every text it renders; escaping here as well would show `&lt;` on screen.
    interpolation: { escapeValue: false },
    initAsync: false,
  });
  document.documentElement.lang = language;
}

export function currentLanguage(): Language {
  return i18n.language === 'de' ? 'de' : 'en';
}

export async function setLanguage(language: Language): Promise<void> {
  await i18n.changeLanguage(language);
  document.documentElement.lang = language;
}

/** The translation function of a namespace; the component renders again when the language changes. */
export function useT(ns: Namespace): TFunction {
  const [, setTick] = useState(0);
  useEffect(() => {
    const changed = () => setTick((n) => n + 1);
    i18n.on('languageChanged', changed);
    return () => i18n.off('languageChanged', changed);
  }, []);
  return i18n.getFixedT(null, ns);
}

/** Date and time in the console's language. */
export function formatDateTime(iso: string | null | undefined): string {
  if (!iso) return '';
  return new Intl.DateTimeFormat(currentLanguage() === 'de' ? 'de-DE' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso));
}

export function formatDate(iso: string | null | undefined): string {
  if (!iso) return '';
  return new Intl.DateTimeFormat(currentLanguage() === 'de' ? 'de-DE' : 'en-GB', { dateStyle: 'medium' }).format(new Date(iso));
}
