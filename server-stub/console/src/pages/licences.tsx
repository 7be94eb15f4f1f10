/**
 * Licences (/licences): the plan in force and its seats, notices of licences that expire or lapse,
 * redeeming one activation code or importing the vendor's CSV file of codes (with its per-line
 * report), and activating licences now or at a date. Every text is translated, the server's
 * errors by their stable codes; messages are translated when they render, so switching the
 * language translates one already on screen.
 */
import { useState } from 'preact/hooks';
import { LICENCE_CSV_CODE_COLUMN } from '../../../src/import-columns.js';
import { api, ApiError } from '../api.js';
import { CsvImportForm, ImportError, ImportReportView, useCsvImport } from '../components/csv-import.js';
import { codeText, errorText } from '../components/error-text.js';
import { LoadError, useLoad } from '../components/page-kit.js';
import { checkDay, DateField } from '../components/date-field.js';
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

/** A line of the vendor's file that redeemed its code. */
interface Accepted {
  line: number;
  code: string;
  uuid: string;
}

/** One licence a bulk activation refused (SERVER_LICENCE_BULK_ACTIVATION details). */
interface Refusal {
  licence: string;
  code: string;
}

const DAY = 86_400_000;
/** Notices start 30 days before a licence expires (as the server's expiry notices do). */
const NOTICE_DAYS = 30;

/** The vendor's file as `fleet-server licences issue --csv` writes it. */
const EXAMPLE = `${LICENCE_CSV_CODE_COLUMN},plan,issuedAt\n96D9-3718-59E5,basic-25,2026-01-05T09:30:00.000Z\n4B1C-07AF-D2E8,basic-25,2026-01-05T09:30:00.000Z`;

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

/** `YYYY-MM-DD` → that day, 00:00 UTC. */
function dayStart(value: string): string {
  return new Date(`${value}T00:00:00Z`).toISOString();
}

/** The UTC day of a time, `YYYY-MM-DD`. */
function dayOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The typed activation day of `l` when it is one it can be activated on, as `YYYY-MM-DD`. */
function dayIn(text: string | undefined, now: number, l: Licence): string | undefined {
  if (!text) return undefined;
  const c = checkDay(text, dayOf(now), dayOf(Date.parse(l.stockDeadline)));
  return 'day' in c ? c.day : undefined;
}

/** The licences a refused bulk activation names, with their own error codes. */
function refusals(err: unknown): Refusal[] {
  if (!(err instanceof ApiError) || err.code !== 'SERVER_LICENCE_BULK_ACTIVATION') return [];
  const errors = (err.details as { errors?: unknown } | undefined)?.errors;
  return Array.isArray(errors) ? errors.filter((e): e is Refusal => typeof e?.licence === 'string' && typeof e?.code === 'string') : [];
}

/** The outcome of the last change; texts are made when it renders (in the language of that moment). */
type Outcome = { kind: 'success'; text: () => string } | { kind: 'error'; err: unknown } | null;

export default function LicencesPage(_props: PageProps) {
  const t = useT('licences');
  const { user } = useSession();
  const admin = user.role === 'admin';
  const { data, error: loadError, reload } = useLoad(t, load);
  const [code, setCode] = useState('');
  const [outcome, setOutcome] = useState<Outcome>(null);
  const [dates, setDates] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const csv = useCsvImport<Accepted>('/api/licences/import', reload);

  const act = async (run: () => Promise<() => string>) => {
    setBusy(true);
    setOutcome(null);
    try {
      setOutcome({ kind: 'success', text: await run() });
    } catch (err) {
      setOutcome({ kind: 'error', err });
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
      return () => t('redeem.done', { code: l.code });
    });
  };
  const activate = (l: Licence, at?: string) =>
    void act(async () => {
      const done = await api.post<Licence>(`/api/licences/${l.uuid}/activate`, at ? { at: dayStart(at) } : {});
      return done.status === 'scheduled'
        ? () => t('activate.scheduled', { code: l.code, date: formatDate(done.activationAt) })
        : () => t('activate.done', { code: l.code });
    });
  const activateAll = () =>
    void act(async () => {
      const done = await api.post<{ items: Licence[] }>('/api/licences/activate', {});
      return () => t('activate.all', { count: done.items.length });
    });

  if (loadError && !data) {
    return (
      <section class="page">
        <h1>{t('title')}</h1>
        <LoadError text={loadError} />
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
  const expired = licences.filter(
    (l) => l.status === 'expired' && l.expiresAt !== null && Date.parse(l.expiresAt) <= now && now - Date.parse(l.expiresAt) <= NOTICE_DAYS * DAY,
  );
  const unused = licences.filter((l) => l.status === 'available');
  const stockEnding = unused.filter((l) => Date.parse(l.stockDeadline) - now <= NOTICE_DAYS * DAY);
  const codeOf = new Map(licences.map((l) => [l.uuid, l.code]));
  const refused = outcome?.kind === 'error' ? refusals(outcome.err) : [];

  return (
    <section class="page">
      <h1>{t('title')}</h1>
      <LoadError text={loadError} />

      <div class="notices" data-testid="licence-notices">
        {plan.plan === null ? <p class="notice warn">{t('notice.noPlan')}</p> : null}
        {expiring.map((l) => (
          <p key={l.uuid} class="notice warn">
            {t('notice.expiring', { code: l.code, date: formatDate(l.expiresAt), count: Math.max(0, Math.ceil((Date.parse(l.expiresAt!) - now) / DAY)) })}
          </p>
        ))}
        {expired.map((l) => (
          <p key={l.uuid} class="notice warn">
            {t('notice.expired', { code: l.code, date: formatDate(l.expiresAt) })}
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
      {plan.seats > 0 ? (
        <p class="seat-usage">
          <meter min={0} max={plan.seats} value={Math.min(plan.managedDevices, plan.seats)} aria-hidden="true" />
          {' '}
          <span data-testid="seats-usage">{t('seats.usage', { used: plan.managedDevices, total: plan.seats })}</span>
        </p>
      ) : null}

      {admin ? (
        <form class="panel form-row" onSubmit={redeem} data-testid="redeem-form">
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
      {outcome?.kind === 'success' ? (
        <p class="success" role="status" data-testid="licence-message">
          {outcome.text()}
        </p>
      ) : null}
      {outcome?.kind === 'error' ? (
        <div class="error" role="alert">
          <p data-testid="licence-message">{errorText(t, outcome.err)}</p>
          {refused.length > 0 ? (
            <ul data-testid="licence-refusals">
              {refused.map((r) => (
                <li key={r.licence}>
                  <code>{codeOf.get(r.licence) ?? r.licence}</code>
                  {': '}
                  {codeText(t, r.code)}
                </li>
              ))}
            </ul>
          ) : null}
        </div>
      ) : null}

      {admin ? (
        <CsvImportForm t={t} prefix="import." busy={csv.busy} onSubmit={(file, partial) => void csv.upload(file, partial)} testid="licence-import-form" example={EXAMPLE}>
          <h2>{t('import.title')}</h2>
          <p>{t('import.intro')}</p>
          <p class="hint">
            {t('import.column')}
            {' '}
            <code>{LICENCE_CSV_CODE_COLUMN}</code>
            {' '}
            {t('import.otherColumns')}
          </p>
        </CsvImportForm>
      ) : null}
      {csv.outcome?.kind === 'error' ? <ImportError t={t} err={csv.outcome.err} /> : null}
      {csv.outcome?.kind === 'report' ? (
        <ImportReportView
          t={t}
          prefix="import."
          report={csv.outcome.report}
          rolledBack={csv.outcome.rolledBack}
          acceptedDetail={(a) => <code data-testid="imported-code">{a.code}</code>}
        />
      ) : null}

      {licences.length === 0 ? (
        <p class="notice">{t('empty')}</p>
      ) : (
        <table class="data" data-testid="licence-table">
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
                <td>{t([`kind.${l.kind}`, 'kind.other'], { kind: l.kind })}</td>
                <td>{l.seats}</td>
                <td>
                  <span class={`status ${l.status}`} data-testid="status">
                    {t(`status.${l.status}`)}
                  </span>
                </td>
                <td data-testid="activation">
                  {l.status === 'available'
                    ? t('activateBy', { date: formatDate(l.stockDeadline) })
                    : l.status === 'scheduled'
                      ? t('activatesOn', { date: formatDate(l.activationAt) })
                      : formatDate(l.activationAt)}
                </td>
                <td>{formatDate(l.expiresAt)}</td>
                {admin ? (
                  <td>
                    {l.status === 'available' ? (
                      <div class="row-actions">
                        <button type="button" class="secondary" disabled={busy} data-testid="activate-now" onClick={() => activate(l)}>
                          {t('activate.now')}
                        </button>
                        <DateField
                          ariaLabel={t('activate.dateLabel')}
                          testid="activation-date"
                          min={dayOf(now)}
                          max={dayOf(Date.parse(l.stockDeadline))}
                          value={dates[l.uuid] ?? ''}
                          onInput={(text) => setDates({ ...dates, [l.uuid]: text })}
                        />
                        <button
                          type="button"
                          class="secondary"
                          disabled={busy || !dayIn(dates[l.uuid], now, l)}
                          data-testid="activate-at"
                          onClick={() => activate(l, dayIn(dates[l.uuid], now, l))}
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
