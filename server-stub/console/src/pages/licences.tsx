import { useCallback, useEffect, useState } from 'preact/hooks';
import { api } from '../api.js';
import { errorText } from '../components/error-text.js';
import { formatDate, useT } from '../i18n.js';
import type { PageProps } from '../router.js';
import { useSession } from '../session.js';

type Status = 'available' | 'scheduled' | 'active' | 'expired' | 'invalidated';

interface Licence {
  uuid: string;
  code: string;
  kind: string;
  seats: number;
  status: Status;
  issuedAt: string;
  redeemedAt: string;
  activationAt: string | null;
  expiresAt: string | null;
  stockDeadline: string;
}

interface Plan {
  plan: 'free' | 'basic' | 'pro' | null;
  seats: number;
  devices: number;
  managedDevices: number;
}

const DAY = 86_400_000;
/** Notices start 30 days before a licence expires (as the server's expiry notices do). */
const NOTICE_DAYS = 30;

interface Data {
  licences: Licence[];
  plan: Plan;
  /** The server's time: terms and notices follow its clock, not the browser's. */
  now: number;
}

async function load(): Promise<Data> {
  const [list, plan, health] = await Promise.all([
    api.get<{ items: Licence[] }>('/api/licences'),
    api.get<Plan>('/api/account/plan'),
    api.get<{ time: string }>('/healthz'),
  ]);
  return { licences: list.items, plan, now: Date.parse(health.time) };
}

/** `YYYY-MM-DD` of a date input → that day, 00:00 UTC. */
function dayStart(value: string): string {
  return new Date(`${value}T00:00:00Z`).toISOString();
}

type Message = { kind: 'success' | 'error'; text: string } | null;

export default function LicencesPage(_props: PageProps) {
  const t = useT('licences');
  const { user } = useSession();
  const admin = user.role === 'admin';
  const [data, setData] = useState<Data | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [code, setCode] = useState('');
  const [message, setMessage] = useState<Message>(null);
  const [dates, setDates] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);

  const reload = useCallback(async () => {
    try {
      setData(await load());
      setLoadError(null);
    } catch (err) {
      setLoadError(errorText(t, err));
    }
  }, [t]);

  useEffect(() => {
    void reload();
  }, []);

  const act = async (run: () => Promise<string>) => {
    setBusy(true);
    setMessage(null);
    try {
      setMessage({ kind: 'success', text: await run() });
    } catch (err) {
      setMessage({ kind: 'error', text: errorText(t, err) });
    } finally {
      await reload();
      setBusy(false);
    }
  };

  const redeem = (e: Event) => {
    e.preventDefault();
    void act(async () => {
      const l = await api.post<Licence>('/api/licences/redeem', { code: code.trim() });
      setCode('');
      return t('redeem.done', { code: l.code });
    });
  };
  const activate = (l: Licence, at?: string) =>
    void act(async () => {
      const done = await api.post<Licence>(`/api/licences/${l.uuid}/activate`, at ? { at: dayStart(at) } : {});
      return done.status === 'scheduled'
        ? t('activate.scheduled', { code: l.code, date: formatDate(done.activationAt) })
        : t('activate.done', { code: l.code });
    });
  const activateAll = () =>
    void act(async () => {
      const done = await api.post<{ items: Licence[] }>('/api/licences/activate', {});
      return t('activate.all', { count: done.items.length });
    });

  if (loadError) {
    return (
      <section class="page">
        <h1>{t('title')}</h1>
        <p class="error" role="alert">
          {loadError}
        </p>
      </section>
    );
  }
  if (!data) {
    return (
      <section class="page" aria-busy="true">
        <h1>{t('title')}</h1>
      </section>
    );
  }

  const { licences, plan, now } = data;
  const available = Math.max(0, plan.seats - plan.managedDevices);
  const expiring = licences.filter(
    (l) => l.status === 'active' && l.expiresAt !== null && Date.parse(l.expiresAt) - now <= NOTICE_DAYS * DAY,
  );
  const unused = licences.filter((l) => l.status === 'available');
  const stockEnding = unused.filter((l) => Date.parse(l.stockDeadline) - now <= NOTICE_DAYS * DAY);

  return (
    <section class="page">
      <h1>{t('title')}</h1>

      <div class="notices" data-testid="licence-notices">
        {plan.plan === null ? <p class="notice warn">{t('notice.noPlan')}</p> : null}
        {expiring.map((l) => (
          <p key={l.uuid} class="notice warn">
            {t('notice.expiring', { code: l.code, date: formatDate(l.expiresAt), count: Math.max(0, Math.ceil((Date.parse(l.expiresAt!) - now) / DAY)) })}
          </p>
        ))}
        {stockEnding.map((l) => (
          <p key={l.uuid} class="notice warn">
            {t('notice.stockDeadline', { code: l.code, date: formatDate(l.stockDeadline) })}
          </p>
        ))}
      </div>

      <div class="tiles">
        <div class="tile" data-testid="seats-used">
          <div class="value">{plan.managedDevices}</div>
          <div class="label">{t('seats.used')}</div>
        </div>
        <div class="tile" data-testid="seats-available">
          <div class="value">{available}</div>
          <div class="label">{t('seats.available')}</div>
        </div>
        <div class="tile" data-testid="seats-total">
          <div class="value">{plan.seats}</div>
          <div class="label">{t('seats.total')}</div>
        </div>
        <div class="tile" data-testid="plan">
          <div class="value">{t(`plan.${plan.plan ?? 'none'}`)}</div>
          <div class="label">{t('plan.label')}</div>
        </div>
      </div>

      {admin ? (
        <form class="panel form-row" onSubmit={redeem}>
          <label>
            {t('redeem.label')}
            <input name="code" required maxLength={64} placeholder="XXXX-XXXX-XXXX" value={code} onInput={(e) => setCode(e.currentTarget.value)} />
          </label>
          <button type="submit" class="primary" disabled={busy}>
            {t('redeem.submit')}
          </button>
          {unused.length > 1 ? (
            <button type="button" class="secondary" disabled={busy} data-testid="activate-all" onClick={activateAll}>
              {t('activate.allButton', { count: unused.length })}
            </button>
          ) : null}
        </form>
      ) : null}
      {message ? (
        <p class={message.kind} role={message.kind === 'error' ? 'alert' : 'status'} data-testid="licence-message">
          {message.text}
        </p>
      ) : null}

      {licences.length === 0 ? (
        <p class="notice">{t('empty')}</p>
      ) : (
        <table class="data">
          <thead>
            <tr>
              <th>{t('columns.code')}</th>
              <th>{t('columns.kind')}</th>
              <th>{t('columns.seats')}</th>
              <th>{t('columns.status')}</th>
              <th>{t('columns.activation')}</th>
              <th>{t('columns.expiry')}</th>
              {admin ? <th>{t('columns.actions')}</th> : null}
            </tr>
          </thead>
          <tbody>
            {licences.map((l) => (
              <tr key={l.uuid} data-code={l.code}>
                <td>
                  <code>{l.code}</code>
                </td>
                <td>{t(`kind.${l.kind}`, { defaultValue: l.kind })}</td>
                <td>{l.seats}</td>
                <td>
                  <span class={`status ${l.status}`} data-testid="status">
                    {t(`status.${l.status}`)}
                  </span>
                </td>
                <td>{l.status === 'available' ? t('activateBy', { date: formatDate(l.stockDeadline) }) : formatDate(l.activationAt)}</td>
                <td>{formatDate(l.expiresAt)}</td>
                {admin ? (
                  <td>
                    {l.status === 'available' ? (
                      <div class="row-actions">
                        <button type="button" class="secondary" disabled={busy} data-testid="activate-now" onClick={() => activate(l)}>
                          {t('activate.now')}
                        </button>
                        <input
                          type="date"
                          aria-label={t('activate.dateLabel')}
                          data-testid="activation-date"
                          value={dates[l.uuid] ?? ''}
                          onInput={(e) => setDates({ ...dates, [l.uuid]: e.currentTarget.value })}
                        />
                        <button
                          type="button"
                          class="secondary"
                          disabled={busy || !dates[l.uuid]}
                          data-testid="activate-at"
                          onClick={() => activate(l, dates[l.uuid])}
                        >
                          {t('activate.at')}
                        </button>
                      </div>
                    ) : null}
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
