/**
 * CSV mass registration (/devices/import): upload a CSV file, see each line's outcome (registered,
 * or refused with its reason), and download the connection profile of a registered device (the
 * file that carries its credential onto the router). All or nothing unless "register the valid
 * lines" is ticked, exactly as the REST import behaves.
 */
import { useState } from 'preact/hooks';
import { DEVICE_CSV_COLUMNS, DEVICE_CSV_CUSTOM_PREFIX } from '../../../src/import-columns.js';
import { api } from '../api.js';
import { CsvImportForm, ImportError, ImportReportView, useCsvImport } from '../components/csv-import.js';
import { errorText } from '../components/error-text.js';
import { Link } from '../components/link.js';
import { useT } from '../i18n.js';
import type { PageProps } from '../router.js';
import { LoadError, useCan } from '../components/page-kit.js';
import '../styles/resources.css';

/** A line that registered a device. */
interface Accepted {
  line: number;
  serialNumber: string;
  uuid: string;
}

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
  const { busy, outcome, upload } = useCsvImport<Accepted>('/api/inventory/managed-devices/import');

  return (
    <section class="page device-import">
      <p>
        <Link href="/devices">{t('back')}</Link>
      </p>
      <h1>{t('title')}</h1>
      {operator ? (
        <CsvImportForm t={t} busy={busy} onSubmit={(file, partial) => void upload(file, partial)} testid="import-form" example={EXAMPLE}>
          <p>{t('intro')}</p>
          <p class="hint">
            {t('columns')}
            {' '}
            <code>{COLUMNS.join(', ')}</code>
          </p>
        </CsvImportForm>
      ) : (
        <p class="notice">{t('operatorsOnly')}</p>
      )}
      {outcome?.kind === 'error' ? <ImportError t={t} err={outcome.err} detailed={DETAILED} /> : null}
      {outcome?.kind === 'report' ? (
        <ImportReportView
          t={t}
          report={outcome.report}
          rolledBack={outcome.rolledBack}
          detailed={DETAILED}
          acceptedDetail={(a) => (
            <>
              <code data-testid="serial">{a.serialNumber}</code>
              {' '}
              {operator ? <ProfileLinks uuid={a.uuid} serialNumber={a.serialNumber} /> : null}
            </>
          )}
        />
      ) : null}
      {operator ? <ProfileLookup /> : null}
    </section>
  );
}
