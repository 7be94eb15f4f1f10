import type { ComponentChildren } from 'preact';
import type { Language } from '../api.js';
import { useT } from '../i18n.js';
import { useSession } from '../session.js';
import { LanguageSwitch } from './language-switch.js';
import { Link } from './link.js';

export interface NavEntry {
  readonly href: string;
  /** Key of the entry's label in common:nav. */
  readonly key: string;
}

/** The shell around every page: product name, navigation, user, language, logout. */
export function Layout(props: {
  nav: readonly NavEntry[];
  current: string;
  onLanguage: (language: Language) => void;
  onLogout: () => void;
  children: ComponentChildren;
}) {
  const t = useT('common');
  const { user } = useSession();
  return (
    <div class="shell">
      <header class="topbar">
        <span class="brand">{t('brand')}</span>
        <div class="topbar-right">
          <span class="user" data-testid="user">
            {user.username}
            <span class="role">{t(`roles.${user.role}`)}</span>
          </span>
          <LanguageSwitch onChange={props.onLanguage} />
          <button type="button" class="link-button" data-testid="logout" onClick={props.onLogout}>
            {t('logout')}
          </button>
        </div>
      </header>
      <nav class="sidebar" aria-label={t('nav.label')}>
        <ul>
          {props.nav.map((entry) => (
            <li key={entry.key}>
              <Link href={entry.href} current={entry.key === props.current} class={entry.key === props.current ? 'active' : undefined}>
                {t(`nav.${entry.key}`)}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <main class="content">{props.children}</main>
    </div>
  );
}
