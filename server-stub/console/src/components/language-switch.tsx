import type { Language } from '../api.js';
import { currentLanguage, LANGUAGES, useT } from '../i18n.js';

/** A select of the console's languages, each named in the current language. */
export function LanguageSwitch(props: { onChange: (language: Language) => void }) {
  const t = useT('common');
  return (
    <label class="language-switch">
      <span class="visually-hidden">{t('language.label')}</span>
      <select
        data-testid="language"
        value={currentLanguage()}
        onChange={(e) => props.onChange((e.currentTarget as HTMLSelectElement).value as Language)}
      >
        {LANGUAGES.map((l) => (
          <option key={l} value={l}>
            {t(`language.${l}`)}
          </option>
        ))}
      </select>
    </label>
  );
}
