/**
 * The console's entry: restores the session of the cookie (or shows the login), then renders the
 * shell with the page of the current path. Pages are modules in pages/, each with a default export
 * taking PageProps; the table below maps paths to them and gives the navigation its order.
 */
import type { ComponentType } from 'preact';
import { render } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, type ConsoleSession, currentSession, type Language, logout, onSessionExpired, setCsrfToken, type User } from './api.js';
import { Layout, type NavEntry } from './components/layout.js';
import { browserLanguage, initI18n, setLanguage, useT } from './i18n.js';
import AccountPage from './pages/account.js';
import DashboardPage from './pages/dashboard.js';
import DeviceImportPage from './pages/device-import.js';
import DevicesPage from './pages/devices.js';
import GroupsPage from './pages/groups.js';
import JobsPage from './pages/jobs.js';
import LicencesPage from './pages/licences.js';
import LoginPage from './pages/login.js';
import ResourcesPage from './pages/resources.js';
import { navigate, type PageProps, usePath } from './router.js';
import { SessionContext } from './session.js';
import './styles/app.css';

interface PageEntry extends NavEntry {
  readonly component: ComponentType<PageProps>;
}

/** The pages, in navigation order; a path belongs to the entry whose href is its longest prefix. */
const PAGES: readonly PageEntry[] = [
  { href: '/', key: 'dashboard', component: DashboardPage },
  { href: '/devices', key: 'devices', component: DevicesPage },
  { href: '/resources', key: 'resources', component: ResourcesPage },
  { href: '/jobs', key: 'jobs', component: JobsPage },
  { href: '/licences', key: 'licences', component: LicencesPage },
  { href: '/account', key: 'account', component: AccountPage },
];

/** Pages under another entry's path, not in the navigation (their key marks that entry as current). */
const SUB_PAGES: readonly PageEntry[] = [
  { href: '/devices/import', key: 'devices', component: DeviceImportPage },
  { href: '/devices/groups', key: 'devices', component: GroupsPage },
];

function pageOf(path: string): PageEntry | undefined {
  if (path === '/') return PAGES[0];
  const sub = SUB_PAGES.find((p) => path === p.href || path.startsWith(`${p.href}/`));
  if (sub) return sub;
  return PAGES.find((p) => p.href !== '/' && (path === p.href || path.startsWith(`${p.href}/`)));
}

type State =
  | { kind: 'loading' }
  | { kind: 'login'; notice: 'expired' | 'loggedOut' | null }
  | { kind: 'shell'; user: User; expiresInSec: number };

function NotFound() {
  const t = useT('common');
  return (
    <section class="page">
      <h1>{t('notFound.title')}</h1>
      <p>{t('notFound.text')}</p>
    </section>
  );
}

function App() {
  const [state, setState] = useState<State>({ kind: 'loading' });
  const path = usePath();
  const t = useT('common');

  const enter = useCallback(async (session: ConsoleSession) => {
    setCsrfToken(session.csrfToken);
    await setLanguage(session.user.language);
    setState({ kind: 'shell', user: session.user, expiresInSec: session.expiresInSec });
  }, []);

  const expired = useCallback(() => {
    setCsrfToken(null);
    setState((s) => (s.kind === 'shell' ? { kind: 'login', notice: 'expired' } : s));
  }, []);

  useEffect(() => {
    currentSession()
      .then((s) => (s ? enter(s) : setState({ kind: 'login', notice: null })))
      .catch(() => setState({ kind: 'login', notice: null }));
    return onSessionExpired(expired);
  }, [enter, expired]);

  // When the session's lifetime (by the server's clock) is over, ask the server: the login shows
  // at once rather than on the next click.
  const lifetime = state.kind === 'shell' ? state.expiresInSec : null;
  useEffect(() => {
    if (lifetime === null) return;
    const timer = setTimeout(() => void currentSession().then((s) => (s ? enter(s) : expired())), Math.min(lifetime * 1000 + 1000, 2 ** 31 - 1));
    return () => clearTimeout(timer);
  }, [lifetime, enter, expired]);

  const page = pageOf(path);
  useEffect(() => {
    document.title = state.kind === 'shell' && page ? `${t(`nav.${page.key}`)} · ${t('brand')}` : t('brand');
  });

  if (state.kind === 'loading') return <div class="loading" aria-busy="true" />;
  if (state.kind === 'login') {
    return <LoginPage notice={state.notice} onLogin={(s) => void enter(s)} onLanguage={(l) => void setLanguage(l)} />;
  }
  const user = state.user;
  const setUser = (u: User) => setState((s) => (s.kind === 'shell' ? { ...s, user: u } : s));
  const changeLanguage = async (language: Language) => {
    await setLanguage(language);
    // The choice is kept in the user's profile, so it follows them to other browsers.
    setUser(await api.patch<User>('/api/me', { language }));
  };
  const doLogout = async () => {
    try {
      await logout();
    } finally {
      setCsrfToken(null);
      navigate('/', true);
      setState({ kind: 'login', notice: 'loggedOut' });
    }
  };
  const Page = page?.component ?? NotFound;
  return (
    <SessionContext.Provider value={{ user, setUser }}>
      <Layout nav={PAGES} current={page?.key ?? ''} onLanguage={(l) => void changeLanguage(l).catch(() => undefined)} onLogout={() => void doLogout()}>
        <Page path={path} />
      </Layout>
    </SessionContext.Provider>
  );
}

initI18n(browserLanguage());
render(<App />, document.getElementById('app')!);
