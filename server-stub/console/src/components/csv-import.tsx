/**
 * CSV mass registration of devices (POST /api/inventory/managed-devices/import): a file, "register
 * the valid rows even if others fail", and the server's report line by line. All or nothing
 * unless that box is ticked: a refused file registers no device and its report says why.
 */
import { useState } from 'preact/hooks';
import { ApiError, csrfToken } from '../api.js';
import { useT } from '../i18n.js';
import { errorText } from './error-text.js';

interface ImportReport {
  rows: number;
  imported: number;
  failed: number;
  partial: boolean;
  errors: Array<{ line: number; code: string; message: string }>;
}

async function importCsv(body: string, partial: boolean): Promise<ImportReport> {
  const res = await fetch(`/api/inventory/managed-devices/import${partial ? '?partial=true' : ''}`, {
    method: 'POST',
    headers: { 'content-type': 'text/csv; charset=utf-8', accept: 'application/json', 'x-csrf-token': csrfToken() ?? '' },
    credentials: 'same-origin',
    body,
  });
  const data = (await res.json().catch(() => ({}))) as Partial<ImportReport> & { code?: string; message?: string; details?: ImportReport };
  if (res.ok) return data as ImportReport;
  // All or nothing: the refusal carries the report of every row.
  if (data.code === 'SERVER_CSV_ROWS_INVALID' && data.details) return data.details;
  throw new ApiError(res.status, data.code ?? `HTTP_${res.status}`, data.message ?? res.statusText);
}

export function CsvImport(props: { onImported: () => void }) {
  const t = useT('devices');
  const [file, setFile] = useState<File | null>(null);
  const [partial, setPartial] = useState(false);
  const [busy, setBusy] = useState(false);
  const [report, setReport] = useState<ImportReport | null>(null);
  const [error, setError] = useState<unknown>(null);

  const submit = async (e: Event) => {
    e.preventDefault();
    if (!file) return;
    setBusy(true);
    setError(null);
    setReport(null);
    try {
      const r = await importCsv(await file.text(), partial);
      setReport(r);
      if (r.imported > 0) props.onImported();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <details class="panel csv-import">
      <summary>{t('import.title')}</summary>
      <p class="muted">{t('import.help')}</p>
      <form class="form-row" onSubmit={(e) => void submit(e)}>
        <label>
          <span>{t('import.file')}</span>
          <input type="file" name="csv" accept=".csv,text/csv" onChange={(e) => setFile((e.currentTarget as HTMLInputElement).files?.[0] ?? null)} />
        </label>
        <label class="checkbox">
          <input type="checkbox" name="partial" checked={partial} onChange={(e) => setPartial((e.currentTarget as HTMLInputElement).checked)} />
          <span>{t('import.partial')}</span>
        </label>
        <button type="submit" class="primary" disabled={!file || busy}>
          {t('import.submit')}
        </button>
      </form>
      {error ? (
        <p class="error" role="alert">
          {errorText(t, error)}
        </p>
      ) : null}
      {report ? (
        <div class="import-report" data-testid="import-report" role="status">
          <p class={report.failed === 0 ? 'success' : report.imported === 0 ? 'error' : ''}>
            {t('import.summary', { imported: report.imported, rows: report.rows, failed: report.failed })}
            {report.failed > 0 && report.imported === 0 && !report.partial ? ` ${t('import.nothing')}` : ''}
          </p>
          {report.errors.length > 0 ? (
            <table>
              <thead>
                <tr>
                  <th>{t('import.line')}</th>
                  <th>{t('import.problem')}</th>
                </tr>
              </thead>
              <tbody>
                {report.errors.map((r) => (
                  <tr key={r.line} title={r.message}>
                    <td>{r.line}</td>
                    <td>{t([`import.codes.${r.code}`, `errors.${r.code}`, `common:errors.${r.code}`], { defaultValue: r.code })}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : null}
        </div>
      ) : null}
    </details>
  );
}
