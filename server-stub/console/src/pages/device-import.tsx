/**
 * CSV mass registration (/devices/import): upload a CSV file, see each line's outcome (registered,
 * or refused with its reason), and download the connection profile of a registered device (the
 * file that carries its credential onto the router). All or nothing unless "register the valid
 * lines" is ticked, exactly as the REST import behaves.
 */
import { useState } from 'preact/hooks';
import { DEVICE_CSV_COLUMNS, DEVICE_CSV_CUSTOM_PREFIX } from '../../../src/import-columns.js';
import { api, ApiError } from '../api.js';
import { errorText } from '../components/error-text.js';
import { Link } from '../components/link.js';
import { useT } from '../i18n.js';
import type { PageProps } from '../router.js';
import { LoadError, useCan } from '../components/page-kit.js';
import '../styles/resources.css';

interface RowError {
  line: number;
  code: string;
  message: string;
}

interface Report {
  rows: number;
  imported: number;
  failed: number;
  partial: boolean;
  errors: RowError[];
  accepted: { line: number; serialNumber: string; uuid: string }[];
}

type Outcome = { kind: 'report'; report: Report; rolledBack: boolean } | { kind: 'error'; err: unknown; detail: string | null };

interface Device {
  uuid: string;
  serialNumber: string;
  name: string;
}

/** The columns the server reads (the header names them; any order), as the server's importer knows them. */
const COLUMNS = [...DEVICE_CSV_COLUMNS, `${DEVICE_CSV_CUSTOM_PREFIX}<key>`];

const EXAMPLE = 'serialNumber,name,location,model,latitude,longitude\nRUT-000101,Depot north,Hall 1,RUT-X11,52.52,13.40\nRUT-000102,Depot south,Hall 2,RUT-X11,48.14,11.58';

/** Codes whose server message says more than the code (which column, which cell). */
const DETAILED = new Set(['SERVER_VALIDATION', 'SERVER_CSV_INVALID']);

function profileUrl(uuid: string, format: 'update-packet' | 'json'): string {
  return `/api/inventory/managed-devices/${uuid}/connection-profile${format === 'json' ? '?format=json' : ''}`;
}

/** Links to a device's connection profile: the signed packet (.tar) and the JSON. */
function ProfileLinks(props: { uuid: string; serialNumber: string }) {
  const t = useT('deviceImport');
  return (
    <span class="row-actions">
      <a href={profileUrl(props.uuid, 'update-packet')} download={`connection-profile-${props.serialNumber}.tar`} data-testid="profile-packet">
        {t('profile.packet')}
      </a>
      <a href={profileUrl(props.uuid, 'json')} download={`connection-profile-${props.serialNumber}.json`} data-testid="profile-json">
        {t('profile.json')}
      </a>
    </span>
  );
}

function ReportView(props: { report: Report; rolledBack: boolean; canDownload: boolean }) {
  const t = useT('deviceImport');
  const { report } = props;
  const lines: ({ line: number } & ({ ok: true; serialNumber: string; uuid: string } | { ok: false; code: string; message: string }))[] = [
    ...report.accepted.map((a) => ({ ...a, ok: true as const })),
    ...report.errors.map((e) => ({ ...e, ok: false as const })),
  ].sort((a, b) => a.line - b.line);
  const unlisted = report.imported - report.accepted.length + (report.failed - report.errors.length);
  return (
    <div class="panel" data-testid="import-report">
      <h2>{t('report.title')}</h2>
      <div class="tiles">
        <div class="tile" data-testid="report-rows">
          <div class="value">{report.rows}</div>
          <div class="label">{t('report.rows')}</div>
        </div>
        <div class="tile" data-testid="report-imported">
          <div class="value">{report.imported}</div>
          <div class="label">{t('report.imported')}</div>
        </div>
        <div class="tile" data-testid="report-failed">
          <div class="value">{report.failed}</div>
          <div class="label">{t('report.failed')}</div>
        </div>
      </div>
      {props.rolledBack ? (
        <p class="notice warn" data-testid="report-rolled-back">
          {t('report.rolledBack', { count: report.failed })}
        </p>
      ) : (
        <p class="success" role="status" data-testid="report-summary">
          {t('report.done', { count: report.imported })}
        </p>
      )}
      {lines.length > 0 ? (
        <table class="data" data-testid="report-lines">
          <thead>
            <tr>
              <th>{t('report.columns.line')}</th>
              <th>{t('report.columns.outcome')}</th>
              <th>{t('report.columns.detail')}</th>
            </tr>
          </thead>
          <tbody>
            {lines.map((l) =>
              l.ok ? (
                <tr key={l.line} data-line={l.line} class="accepted">
                  <td>{l.line}</td>
                  <td>
                    <span class="status active" data-testid="outcome">
                      {t('report.accepted')}
                    </span>
                  </td>
                  <td>
                    <code data-testid="serial">{l.serialNumber}</code>
                    {' '}
                    {props.canDownload ? <ProfileLinks uuid={l.uuid} serialNumber={l.serialNumber} /> : null}
                  </td>
                </tr>
              ) : (
                <tr key={l.line} data-line={l.line} class="refused">
                  <td>{l.line}</td>
                  <td>
                    <span class="status expired" data-testid="outcome">
                      {t('report.refused')}
                    </span>
                  </td>
                  <td data-testid="reason">
                    {t([`reasons.${l.code}`, 'reasons.other'], { code: l.code })}
                    {DETAILED.has(l.code) ? (
                      <span class="detail">
                        {' '}
                        (
                        {l.message}
                        )
                      </span>
                    ) : null}
                  </td>
                </tr>
              ),
            )}
          </tbody>
        </table>
      ) : null}
      {unlisted > 0 ? <p class="hint">{t('report.unlisted', { count: unlisted })}</p> : null}
    </div>
  );
}

/** A registered device by serial number, with its profile links. */
function ProfileLookup() {
  const t = useT('deviceImport');
  const [serial, setSerial] = useState('');
  const [found, setFound] = useState<Device[] | null>(null);
  const [error, setError] = useState<{ err: unknown } | null>(null);
  const find = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      const page = await api.get<{ items: Device[] }>(`/api/inventory/managed-devices?limit=5&serialNumber=${encodeURIComponent(serial.trim())}`);
      setFound(page.items);
    } catch (err) {
      setError({ err });
    }
  };
  return (
    <div class="panel" data-testid="profile-lookup">
      <h2>{t('profile.title')}</h2>
      <p class="hint">{t('profile.hint')}</p>
      <form class="form-row" onSubmit={(e) => void find(e)}>
        <label>
          {t('profile.serial')}
          <input name="profileSerial" required maxLength={64} value={serial} onInput={(e) => setSerial(e.currentTarget.value)} />
        </label>
        <button type="submit" class="secondary">
          {t('profile.find')}
        </button>
      </form>
      <LoadError text={error ? errorText(t, error.err) : null} />
      {found === null ? null : found.length === 0 ? (
        <p class="notice">{t('profile.none')}</p>
      ) : (
        <ul class="choices" data-testid="profile-results">
          {found.map((d) => (
            <li key={d.uuid}>
              <code>{d.serialNumber}</code>
              {' '}
              {d.name}
              {' '}
              <ProfileLinks uuid={d.uuid} serialNumber={d.serialNumber} />
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export default function DeviceImportPage(_props: PageProps) {
  const t = useT('deviceImport');
  const operator = useCan('operator');
  const [file, setFile] = useState<File | null>(null);
  const [partial, setPartial] = useState(false);
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!file) return;
    setBusy(true);
    setOutcome(null);
    try {
      const report = await api.post<Report>(`/api/inventory/managed-devices/import${partial ? '?partial=true' : ''}`, file, { contentType: 'text/csv' });
      setOutcome({ kind: 'report', report, rolledBack: false });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'SERVER_CSV_ROWS_INVALID' && err.details) {
        setOutcome({ kind: 'report', report: err.details as Report, rolledBack: true });
      } else {
        setOutcome({ kind: 'error', err, detail: err instanceof ApiError && DETAILED.has(err.code) ? err.message : null });
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="page device-import">
      <p>
        <Link href="/devices">{t('back')}</Link>
      </p>
      <h1>{t('title')}</h1>
      {operator ? (
        <form class="panel" onSubmit={(e) => void submit(e)} data-testid="import-form">
          <p>{t('intro')}</p>
          <p class="hint">
            {t('columns')}
            {' '}
            <code>{COLUMNS.join(', ')}</code>
          </p>
          <details>
            <summary>{t('example')}</summary>
            <pre class="manifest">{EXAMPLE}</pre>
          </details>
          <div class="form-row">
            <label>
              {t('file')}
              <input type="file" name="csv" accept=".csv,text/csv" required onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
            </label>
            <label class="checkbox">
              <input type="checkbox" name="partial" checked={partial} onChange={(e) => setPartial(e.currentTarget.checked)} />
              {t('partial')}
            </label>
            <button type="submit" class="primary" disabled={busy || !file}>
              {t('submit')}
            </button>
          </div>
        </form>
      ) : (
        <p class="notice">{t('operatorsOnly')}</p>
      )}
      {outcome?.kind === 'error' ? (
        <p class="error" role="alert" data-testid="import-error">
          {errorText(t, outcome.err)}
          {outcome.detail ? (
            <span class="detail">
              {' '}
              (
              {outcome.detail}
              )
            </span>
          ) : null}
        </p>
      ) : null}
      {outcome?.kind === 'report' ? <ReportView report={outcome.report} rolledBack={outcome.rolledBack} canDownload={operator} /> : null}
      {operator ? <ProfileLookup /> : null}
    </section>
  );
}
