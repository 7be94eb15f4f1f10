/**
 * Account: the user's own profile (contact details, password) and the company's contact details
 * for everyone; for admins also users and roles, API tokens (shown once when created) and the
 * audit log (paged, newest first, with a check of its hash chain). What the plan does not include
 * (more users, the audit log, API tokens without an API licence) shows the server's reason.
 */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, type Language, type Role, type User } from '../api.js';
import { errorText } from '../components/error-text.js';
import { SubmitRow } from '../components/page-kit.js';
import { type Column, type Page, PagedTable, usePagedList } from '../components/paged-table.js';
import { currentLanguage, formatDateTime, useT } from '../i18n.js';
import type { PageProps } from '../router.js';
import { useSession } from '../session.js';
import '../styles/fleet.css';
import '../styles/account.css';

const COMPANY_FIELDS = ['companyName', 'street', 'postalCode', 'city', 'country', 'vatId', 'contactEmail', 'contactPhone'] as const;
type CompanyField = (typeof COMPANY_FIELDS)[number];

interface Account {
  uuid: string;
  name: string;
  settings: Partial<Record<CompanyField, string>> & { analyticsConsent?: boolean };
  createdAt: string;
}

const PROFILE_FIELDS = ['firstName', 'lastName', 'email', 'phone'] as const;
type ProfileField = (typeof PROFILE_FIELDS)[number];

interface ApiToken {
  uuid: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

interface AuditRecord {
  seq: number;
  at: string;
  actor: { type: 'user' | 'system'; userUuid?: string; username?: string; via?: 'session' | 'api' };
  action: string;
  resourceKind: string | null;
  resourceUuid: string | null;
  status: number;
}

const ROLES: readonly Role[] = ['admin', 'operator', 'viewer'];
const AUDIT_PAGE = 25;

type Message = { kind: 'success' | 'error'; text: string; language: Language } | null;

function Note(props: { message: Message; testId: string }) {
  useT('account');
  // A message says what happened in the language of that moment; after a switch it is left out.
  if (!props.message || props.message.language !== currentLanguage()) return null;
  return (
    <p class={props.message.kind} role={props.message.kind === 'error' ? 'alert' : 'status'} data-testid={props.testId}>
      {props.message.text}
    </p>
  );
}

function Panel(props: { title: string; testId: string; children: ComponentChildren }) {
  return (
    <section class="panel account-panel" data-testid={props.testId}>
      <h2>{props.title}</h2>
      {props.children}
    </section>
  );
}

/** Runs an action, turning its outcome into a message (the server's error code translated). */
function useAction(): [Message, boolean, (run: () => Promise<string | { kind: 'error'; text: string }>) => Promise<void>] {
  const t = useT('account');
  const [message, setMessage] = useState<Message>(null);
  const [busy, setBusy] = useState(false);
  const run = useCallback(
    async (action: () => Promise<string | { kind: 'error'; text: string }>) => {
      setBusy(true);
      setMessage(null);
      try {
        const outcome = await action();
        setMessage({ ...(typeof outcome === 'string' ? { kind: 'success', text: outcome } : outcome), language: currentLanguage() });
      } catch (err) {
        setMessage({ kind: 'error', text: errorText(t, err), language: currentLanguage() });
      } finally {
        setBusy(false);
      }
    },
    [t],
  );
  return [message, busy, run];
}

function ProfileSection() {
  const t = useT('account');
  const { user, setUser } = useSession();
  const [profile, setProfile] = useState<Record<ProfileField, string>>(() => {
    const p = user.profile;
    return { firstName: p['firstName'] ?? '', lastName: p['lastName'] ?? '', email: p['email'] ?? '', phone: p['phone'] ?? '' };
  });
  const [message, busy, run] = useAction();
  const save = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const body: Partial<Record<ProfileField, string>> = {};
      for (const f of PROFILE_FIELDS) if (profile[f].trim() !== '') body[f] = profile[f].trim();
      setUser(await api.patch<User>('/api/me', { profile: body }));
      return t('saved');
    });
  };
  return (
    <Panel title={t('profile.title')} testId="profile">
      <p class="muted">{t('profile.signedInAs', { username: user.username, role: t(`common:roles.${user.role}`) })}</p>
      <form class="form-grid" onSubmit={save} noValidate>
        {PROFILE_FIELDS.map((f) => (
          <label key={f}>
            <span>{t(`profile.${f}`)}</span>
            <input
              name={f}
              // (one input type per field; the cast keeps preact's per-type attribute unions apart)
              type={(f === 'email' ? 'email' : f === 'phone' ? 'tel' : 'text') as 'text'}
              value={profile[f]}
              onInput={(e) => setProfile({ ...profile, [f]: (e.currentTarget as HTMLInputElement).value })}
            />
          </label>
        ))}
        <SubmitRow busy={busy} label={t('common:actions.save')} testid="profile-save" />
      </form>
      <Note message={message} testId="profile-message" />
      <PasswordForm />
    </Panel>
  );
}

function PasswordForm() {
  const t = useT('account');
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [message, busy, run] = useAction();
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      await api.post('/api/me/password', { currentPassword: current, newPassword: next });
      setCurrent('');
      setNext('');
      return t('password.done');
    });
  };
  return (
    <form class="form-row password-form" onSubmit={submit}>
      <label>
        <span>{t('password.current')}</span>
        <input type="password" name="currentPassword" autoComplete="current-password" value={current} onInput={(e) => setCurrent((e.currentTarget as HTMLInputElement).value)} />
      </label>
      <label>
        <span>{t('password.new')}</span>
        <input type="password" name="newPassword" autoComplete="new-password" minLength={10} value={next} onInput={(e) => setNext((e.currentTarget as HTMLInputElement).value)} />
      </label>
      <button type="submit" class="secondary" disabled={busy || !current || next.length < 10}>
        {t('password.submit')}
      </button>
      <Note message={message} testId="password-message" />
    </form>
  );
}

function CompanySection(props: { admin: boolean }) {
  const t = useT('account');
  const [account, setAccount] = useState<Account | null>(null);
  const [name, setName] = useState('');
  const [fields, setFields] = useState<Record<CompanyField, string>>(() => Object.fromEntries(COMPANY_FIELDS.map((f) => [f, ''])) as Record<CompanyField, string>);
  const [consent, setConsent] = useState(false);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [message, busy, run] = useAction();

  const show = (a: Account) => {
    setAccount(a);
    setName(a.name);
    setFields(Object.fromEntries(COMPANY_FIELDS.map((f) => [f, a.settings[f] ?? ''])) as Record<CompanyField, string>);
    setConsent(a.settings.analyticsConsent === true);
  };
  useEffect(() => {
    api.get<Account>('/api/account').then(show).catch(setLoadError);
  }, []);

  const save = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const settings: Record<string, string | boolean> = { analyticsConsent: consent };
      for (const f of COMPANY_FIELDS) settings[f] = fields[f].trim();
      show(await api.patch<Account>('/api/account', { name: name.trim(), settings }));
      return t('saved');
    });
  };
  return (
    <Panel title={t('company.title')} testId="company">
      {loadError ? (
        <p class="error" role="alert">
          {errorText(t, loadError)}
        </p>
      ) : null}
      {account ? (
        <form class="form-grid" onSubmit={save} noValidate>
          <label>
            <span>{t('company.name')}</span>
            <input name="accountName" required maxLength={200} disabled={!props.admin} value={name} onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)} />
          </label>
          {COMPANY_FIELDS.map((f) => (
            <label key={f}>
              <span>{t(`company.${f}`)}</span>
              <input
                name={f}
                type={(f === 'contactEmail' ? 'email' : f === 'contactPhone' ? 'tel' : 'text') as 'text'}
                disabled={!props.admin}
                value={fields[f]}
                onInput={(e) => setFields({ ...fields, [f]: (e.currentTarget as HTMLInputElement).value })}
              />
            </label>
          ))}
          <label class="choice wide">
            <input type="checkbox" name="analyticsConsent" disabled={!props.admin} checked={consent} onChange={(e) => setConsent((e.currentTarget as HTMLInputElement).checked)} />
            <span>{t('company.analyticsConsent')}</span>
          </label>
          {props.admin ? (
            <SubmitRow busy={busy} label={t('common:actions.save')} testid="company-save" />
          ) : null}
        </form>
      ) : null}
      <Note message={message} testId="company-message" />
    </Panel>
  );
}

function UsersSection() {
  const t = useT('account');
  const { user: me } = useSession();
  const [users, setUsers] = useState<User[] | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [draft, setDraft] = useState({ username: '', password: '', role: 'operator' as Role });
  const [removing, setRemoving] = useState<string | null>(null);
  const [message, busy, run] = useAction();

  const load = useCallback(async () => {
    try {
      const out: User[] = [];
      let cursor: string | null = null;
      do {
        const page: Page<User> = await api.get<Page<User>>(`/api/users?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        out.push(...page.items);
        cursor = page.nextCursor;
      } while (cursor !== null);
      setUsers(out);
      setLoadError(null);
    } catch (err) {
      setLoadError(err);
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  const add = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const u = await api.post<User>('/api/users', { username: draft.username.trim(), password: draft.password, role: draft.role });
      setDraft({ username: '', password: '', role: 'operator' });
      await load();
      return t('users.added', { username: u.username });
    });
  };
  const changeRole = (u: User, role: Role) =>
    void run(async () => {
      try {
        await api.patch<User>(`/api/users/${u.uuid}`, { role });
        return t('users.roleChanged', { username: u.username, role: t(`common:roles.${role}`) });
      } finally {
        await load();
      }
    });
  const remove = (u: User) =>
    void run(async () => {
      setRemoving(null);
      try {
        await api.del(`/api/users/${u.uuid}`);
        return t('users.removed', { username: u.username });
      } finally {
        await load();
      }
    });

  return (
    <Panel title={t('users.title')} testId="users">
      {loadError ? (
        <p class="error" role="alert">
          {errorText(t, loadError)}
        </p>
      ) : null}
      {users ? (
        <table class="data" data-testid="user-table">
          <thead>
            <tr>
              <th>{t('users.username')}</th>
              <th>{t('users.name')}</th>
              <th>{t('users.role')}</th>
              <th>{t('users.created')}</th>
              <th>{t('users.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {users.map((u) => (
              <tr key={u.uuid} data-username={u.username}>
                <td>
                  {u.username}
                  {u.uuid === me.uuid ? <span class="muted small">{` (${t('users.you')})`}</span> : null}
                </td>
                <td>{[u.profile['firstName'], u.profile['lastName']].filter(Boolean).join(' ')}</td>
                <td>
                  <select
                    name="role"
                    aria-label={t('users.role')}
                    value={u.role}
                    disabled={busy}
                    onChange={(e) => changeRole(u, (e.currentTarget as HTMLSelectElement).value as Role)}
                  >
                    {ROLES.map((r) => (
                      <option key={r} value={r}>
                        {t(`common:roles.${r}`)}
                      </option>
                    ))}
                  </select>
                </td>
                <td class="nowrap">{formatDateTime(u.createdAt)}</td>
                <td>
                  {u.uuid === me.uuid ? null : removing === u.uuid ? (
                    <span class="row-actions">
                      <button type="button" class="danger" disabled={busy} data-testid="user-remove-confirm" onClick={() => remove(u)}>
                        {t('users.removeYes')}
                      </button>
                      <button type="button" class="secondary" onClick={() => setRemoving(null)}>
                        {t('users.removeNo')}
                      </button>
                    </span>
                  ) : (
                    <button type="button" class="secondary" disabled={busy} data-testid="user-remove" onClick={() => setRemoving(u.uuid)}>
                      {t('users.remove')}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <form class="form-row add-user" onSubmit={add}>
        <label>
          <span>{t('users.username')}</span>
          <input name="newUsername" required minLength={3} maxLength={100} autoComplete="off" value={draft.username} onInput={(e) => setDraft({ ...draft, username: (e.currentTarget as HTMLInputElement).value })} />
        </label>
        <label>
          <span>{t('users.password')}</span>
          <input
            name="newUserPassword"
            type="password"
            required
            minLength={10}
            autoComplete="new-password"
            value={draft.password}
            onInput={(e) => setDraft({ ...draft, password: (e.currentTarget as HTMLInputElement).value })}
          />
        </label>
        <label>
          <span>{t('users.role')}</span>
          <select name="newUserRole" value={draft.role} onChange={(e) => setDraft({ ...draft, role: (e.currentTarget as HTMLSelectElement).value as Role })}>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {t(`common:roles.${r}`)}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="primary" disabled={busy} data-testid="user-add">
          {t('users.add')}
        </button>
      </form>
      <p class="muted small">{t('users.rolesHint')}</p>
      <Note message={message} testId="users-message" />
    </Panel>
  );
}

function TokensSection() {
  const t = useT('account');
  const [tokens, setTokens] = useState<ApiToken[] | null>(null);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [name, setName] = useState('');
  const [created, setCreated] = useState<{ name: string; token: string } | null>(null);
  const [message, busy, run] = useAction();

  const load = useCallback(async () => {
    try {
      setTokens((await api.get<Page<ApiToken>>('/api/api-tokens?limit=100')).items);
      setLoadError(null);
    } catch (err) {
      setLoadError(err);
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  const create = (e: Event) => {
    e.preventDefault();
    setCreated(null);
    void run(async () => {
      const tok = await api.post<{ uuid: string; name: string; token: string }>('/api/api-tokens', { name: name.trim() });
      setName('');
      setCreated({ name: tok.name, token: tok.token });
      await load();
      return t('tokens.created', { name: tok.name });
    });
  };
  const revoke = (tok: ApiToken) =>
    void run(async () => {
      try {
        await api.del(`/api/api-tokens/${tok.uuid}`);
        return t('tokens.revoked', { name: tok.name });
      } finally {
        await load();
      }
    });

  return (
    <Panel title={t('tokens.title')} testId="tokens">
      {loadError ? (
        <p class="error" role="alert">
          {errorText(t, loadError)}
        </p>
      ) : null}
      {tokens && tokens.length > 0 ? (
        <table class="data" data-testid="token-table">
          <thead>
            <tr>
              <th>{t('tokens.name')}</th>
              <th>{t('tokens.createdAt')}</th>
              <th>{t('tokens.lastUsed')}</th>
              <th>{t('tokens.state')}</th>
              <th>{t('users.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((tok) => (
              <tr key={tok.uuid} data-token={tok.name}>
                <td>{tok.name}</td>
                <td class="nowrap">{formatDateTime(tok.createdAt)}</td>
                <td class="nowrap">{tok.lastUsedAt ? formatDateTime(tok.lastUsedAt) : t('tokens.never')}</td>
                <td data-testid="token-state">{tok.revokedAt ? t('tokens.revokedAt', { date: formatDateTime(tok.revokedAt) }) : t('tokens.active')}</td>
                <td>
                  {tok.revokedAt ? null : (
                    <button type="button" class="secondary" disabled={busy} data-testid="token-revoke" onClick={() => revoke(tok)}>
                      {t('tokens.revoke')}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : tokens ? (
        <p class="muted">{t('tokens.none')}</p>
      ) : null}
      <form class="form-row" onSubmit={create}>
        <label>
          <span>{t('tokens.name')}</span>
          <input name="tokenName" required maxLength={100} value={name} onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)} />
        </label>
        <button type="submit" class="primary" disabled={busy || !name.trim()} data-testid="token-create">
          {t('tokens.create')}
        </button>
      </form>
      {created ? (
        <div class="notice token-once" data-testid="token-once">
          <p>{t('tokens.once', { name: created.name })}</p>
          <code class="mono token-value" data-testid="token-value">
            {created.token}
          </code>
        </div>
      ) : null}
      <Note message={message} testId="tokens-message" />
    </Panel>
  );
}

function AuditSection() {
  const t = useT('account');
  const list = usePagedList((cursor) => api.get<Page<AuditRecord>>(`/api/audit-log?limit=${AUDIT_PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`));
  const [message, busy, run] = useAction();

  const verify = () =>
    void run(async () => {
      const v = await api.get<{ ok: boolean; records: number; brokenAtSeq: number | null }>('/api/audit-log/verify');
      if (!v.ok) return { kind: 'error' as const, text: t('audit.broken', { seq: v.brokenAtSeq }) };
      return t('audit.intact', { count: v.records });
    });

  const actor = (r: AuditRecord) =>
    r.actor.type === 'system' ? t('audit.system') : `${r.actor.username ?? r.actor.userUuid ?? ''}${r.actor.via ? ` (${t(`audit.via.${r.actor.via}`)})` : ''}`;
  const columns: Column<AuditRecord>[] = [
    { id: 'seq', header: t('audit.seq'), cell: (r) => r.seq },
    { id: 'at', header: t('audit.at'), class: 'nowrap', cell: (r) => formatDateTime(r.at) },
    { id: 'actor', header: t('audit.actor'), cell: actor },
    { id: 'action', header: t('audit.action'), cell: (r) => <code class="mono">{r.action}</code> },
    {
      id: 'resource',
      header: t('audit.resource'),
      cell: (r) => (
        <>
          {r.resourceKind ? t(`audit.kinds.${r.resourceKind}`, { defaultValue: r.resourceKind }) : ''}
          {r.resourceUuid ? (
            <div class="muted small mono" title={r.resourceUuid}>
              {r.resourceUuid.slice(0, 8)}
            </div>
          ) : null}
        </>
      ),
    },
    { id: 'status', header: t('audit.status'), cell: (r) => <span class={r.status >= 400 ? 'error' : undefined}>{r.status}</span> },
  ];

  return (
    <Panel title={t('audit.title')} testId="audit">
      <div class="row-actions">
        <button type="button" class="secondary" data-testid="audit-refresh" onClick={list.restart}>
          {t('audit.refresh')}
        </button>
        <button type="button" class="secondary" disabled={busy} data-testid="audit-verify" onClick={verify}>
          {t('audit.verify')}
        </button>
      </div>
      <Note message={message} testId="audit-message" />
      <PagedTable
        list={list}
        columns={columns}
        rowKey={(r) => String(r.seq)}
        rowAttrs={(r) => ({ 'data-seq': String(r.seq) })}
        testId="audit-table"
        errorT={t}
        empty={t('audit.none')}
      />
    </Panel>
  );
}

export default function AccountPage(_props: PageProps) {
  const t = useT('account');
  const { user } = useSession();
  const admin = user.role === 'admin';
  return (
    <section class="page account">
      <h1>{t('title')}</h1>
      <div class="account-grid">
        <ProfileSection />
        <CompanySection admin={admin} />
      </div>
      {admin ? (
        <>
          <UsersSection />
          <TokensSection />
          <AuditSection />
        </>
      ) : (
        <p class="notice">{t('adminOnly')}</p>
      )}
    </section>
  );
}
