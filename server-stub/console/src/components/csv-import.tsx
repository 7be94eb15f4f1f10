/**
 * What the CSV import pages share (devices, licences): the upload form, the upload itself, and the
 * per-line report. Texts come from the page's namespace under `prefix` (same keys on every page:
 * `file`, `partial`, `submit`, `report.*`, `reasons.<CODE>`), so each page words its own outcome.
 * The server imports all or nothing unless "partial" is ticked; a refused import answers
 * SERVER_CSV_ROWS_INVALID with the report in its details, which is shown like any other report.
 */
import type { TFunction } from 'i18next';
import type { ComponentChildren, JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, ApiError } from '../api.js';
import { errorText } from './error-text.js';
import { FilePicker } from './file-picker.js';
import '../styles/resources.css';

/** Which column of a CSV file breaks which rule (the server's `details` with `in: csv`). */
export interface CsvDetails {
  in: 'csv';
  /** The column as a JSON pointer (`/latitude`, `/customFields/site`); '' for the file or row as a whole. */
  field: string;
  rule: string;
  limit?: number;
}

export interface RowError {
  line: number;
  code: string;
  message: string;
  details?: CsvDetails;
}

function csvDetails(details: unknown): CsvDetails | null {
  const d = details as Partial<CsvDetails> | undefined;
  return d && d.in === 'csv' && typeof d.field === 'string' && typeof d.rule === 'string' ? (d as CsvDetails) : null;
}

/** What a CSV detail says, in the user's language: the column (as the file names it) and the rule it breaks. */
function csvDetailText(t: TFunction, d: CsvDetails): string {
  if (d.field === '') return t(`common:csv.${d.rule}`, { defaultValue: t('common:csv.invalid') });
  const column = d.field.slice(1).replace('/', '.');
  return t(`common:validation.${d.rule}`, { field: column, limit: d.limit, defaultValue: t('common:validation.invalid', { field: column }) });
}

/** The translated detail when the server gave one, else its own words for `detailed` codes, else nothing. */
function Detail(props: { t: TFunction; code: string; message: string; details: unknown; detailed?: ReadonlySet<string> | undefined }) {
  const d = csvDetails(props.details);
  if (d) return <ServerDetail text={csvDetailText(props.t, d).replace(/\.$/, '')} />;
  return props.detailed?.has(props.code) ? <ServerDetail text={props.message} /> : null;
}

/** The report of a CSV import; `accepted` holds the lines that were imported. */
export interface ImportReport<A extends { line: number }> {
  rows: number;
  imported: number;
  failed: number;
  partial: boolean;
  errors: RowError[];
  accepted: A[];
}

export type ImportOutcome<A extends { line: number }> =
  | { kind: 'report'; report: ImportReport<A>; rolledBack: boolean }
  | { kind: 'error'; err: unknown };

/** The CSV text of `file` sent to an import route; a refused import comes back as its report. */
export async function uploadCsv<A extends { line: number }>(url: string, file: File, partial: boolean): Promise<ImportOutcome<A>> {
  try {
    const report = await api.post<ImportReport<A>>(`${url}${partial ? '?partial=true' : ''}`, file, { contentType: 'text/csv' });
    return { kind: 'report', report, rolledBack: false };
  } catch (err) {
    if (err instanceof ApiError && err.code === 'SERVER_CSV_ROWS_INVALID' && err.details) {
      return { kind: 'report', report: err.details as ImportReport<A>, rolledBack: true };
    }
    return { kind: 'error', err };
  }
}

/** An upload form (file, "import the valid lines" box, submit) and the outcome of its last upload. */
export function useCsvImport<A extends { line: number }>(url: string, after: () => Promise<void> | void = () => undefined) {
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<ImportOutcome<A> | null>(null);
  const upload = async (file: File, partial: boolean) => {
    setBusy(true);
    setOutcome(null);
    try {
      setOutcome(await uploadCsv<A>(url, file, partial));
      await after();
    } finally {
      setBusy(false);
    }
  };
  return { busy, outcome, upload };
}

export function CsvImportForm(props: {
  t: TFunction;
  prefix?: string;
  busy: boolean;
  onSubmit: (file: File, partial: boolean) => void;
  /** What the form says before its fields (what the file holds). */
  children?: ComponentChildren;
  /** An example file, shown folded under the children. */
  example?: string;
  testid: string;
}) {
  const { t, prefix = '' } = props;
  const [file, setFile] = useState<File | null>(null);
  const [partial, setPartial] = useState(false);
  const submit = (e: Event) => {
    e.preventDefault();
    if (file) props.onSubmit(file, partial);
  };
  return (
    <form class="panel" onSubmit={submit} data-testid={props.testid}>
      {props.children}
      {props.example === undefined ? null : (
        <details>
          <summary>{t(`${prefix}example`)}</summary>
          <pre class="manifest">{props.example}</pre>
        </details>
      )}
      <div class="form-row">
        <FilePicker caption={t(`${prefix}file`)} name="csv" accept=".csv,text/csv" file={file} onChange={setFile} />
        <label class="checkbox">
          <input type="checkbox" name="partial" checked={partial} onChange={(e) => setPartial(e.currentTarget.checked)} />
          {t(`${prefix}partial`)}
        </label>
        <button type="submit" class="primary" disabled={props.busy || !file}>
          {t(`${prefix}submit`)}
        </button>
      </div>
    </form>
  );
}

/** What follows a translated reason in parentheses: which column breaks which rule, or the server's own words. */
function ServerDetail(props: { text: string }) {
  return (
    <span class="detail">
      {' '}
      (
      {props.text}
      )
    </span>
  );
}

/** A failed upload (the file as a whole was refused): the translated error, and the server's detail for `detailed` codes. */
export function ImportError(props: { t: TFunction; err: unknown; detailed?: ReadonlySet<string> }) {
  const { err } = props;
  return (
    <p class="error" role="alert" data-testid="import-error">
      {errorText(props.t, err)}
      {err instanceof ApiError ? <Detail t={props.t} code={err.code} message={err.message} details={err.details} detailed={props.detailed} /> : null}
    </p>
  );
}

/**
 * The report: counts, whether anything was imported, and one row per line listed (imported, with
 * what `acceptedDetail` shows; or refused, with the reason for its code: `reasons.<CODE>` of the
 * page, else its `errors.<CODE>`, else `reasons.other`). The server's own message
 * follows the reason only for `detailed` codes (it names the column or value).
 */
export function ImportReportView<A extends { line: number }>(props: {
  t: TFunction;
  prefix?: string;
  report: ImportReport<A>;
  rolledBack: boolean;
  acceptedDetail: (a: A) => JSX.Element;
  detailed?: ReadonlySet<string>;
}) {
  const { t, prefix = '', report } = props;
  const k = (key: string) => `${prefix}${key}`;
  type Line = { line: number } & ({ ok: true; item: A } | { ok: false; error: RowError });
  const lines: Line[] = [
    ...report.accepted.map((item): Line => ({ line: item.line, ok: true, item })),
    ...report.errors.map((error): Line => ({ line: error.line, ok: false, error })),
  ].sort((a, b) => a.line - b.line);
  const unlisted = report.imported - report.accepted.length + (report.failed - report.errors.length);
  return (
    <div class="panel" data-testid="import-report">
      <h2>{t(k('report.title'))}</h2>
      <div class="tiles">
        <div class="tile" data-testid="report-rows">
          <div class="value">{report.rows}</div>
          <div class="label">{t(k('report.rows'))}</div>
        </div>
        <div class="tile" data-testid="report-imported">
          <div class="value">{report.imported}</div>
          <div class="label">{t(k('report.imported'))}</div>
        </div>
        <div class="tile" data-testid="report-failed">
          <div class="value">{report.failed}</div>
          <div class="label">{t(k('report.failed'))}</div>
        </div>
      </div>
      {props.rolledBack ? (
        <p class="notice warn" data-testid="report-rolled-back">
          {t(k('report.rolledBack'), { count: report.failed })}
        </p>
      ) : (
        <p class="success" role="status" data-testid="report-summary">
          {t(k('report.done'), { count: report.imported })}
        </p>
      )}
      {lines.length > 0 ? (
        <table class="data" data-testid="report-lines">
          <thead>
            <tr>
              <th>{t(k('report.columns.line'))}</th>
              <th>{t(k('report.columns.outcome'))}</th>
              <th>{t(k('report.columns.detail'))}</th>
            </tr>
          </thead>
          <tbody>
            {lines.map((l) => (
              <tr key={l.line} data-line={l.line} class={l.ok ? 'accepted' : 'refused'}>
                <td>{l.line}</td>
                <td>
                  <span class={`status ${l.ok ? 'active' : 'expired'}`} data-testid="outcome">
                    {t(k(l.ok ? 'report.accepted' : 'report.refused'))}
                  </span>
                </td>
                {l.ok ? (
                  <td>{props.acceptedDetail(l.item)}</td>
                ) : (
                  <td data-testid="reason" data-code={l.error.code}>
                    {t([k(`reasons.${l.error.code}`), `errors.${l.error.code}`, k('reasons.other')], { code: l.error.code })}
                    <Detail t={t} code={l.error.code} message={l.error.message} details={l.error.details} detailed={props.detailed} />
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {unlisted > 0 ? <p class="hint">{t(k('report.unlisted'), { count: unlisted })}</p> : null}
    </div>
  );
}
