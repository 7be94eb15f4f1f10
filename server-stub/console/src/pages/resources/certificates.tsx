/**
 * The certificate store (Basic and Pro): certificates and CA certificates with their validity,
 * those expiring within 30 days called out, upload (PEM or DER file, or pasted PEM) and delete.
 * Private keys are never accepted (the server refuses them).
 */
import { useState } from 'preact/hooks';
import { api } from '../../api.js';
import { FilePicker } from '../../components/file-picker.js';
import { formatDate, formatDateTime, useT } from '../../i18n.js';
import { fileBase64, LoadError, MessageLine, ShortHash, useAction, useCan, useLoad } from '../../components/page-kit.js';

type Status = 'valid' | 'expiring' | 'expired' | 'not-yet-valid';

interface Certificate {
  uuid: string;
  name: string;
  kind: 'certificate' | 'ca';
  subject: string;
  issuer: string;
  serialNumber: string;
  notBefore: string | null;
  notAfter: string | null;
  fingerprintSha256: string;
  selfSigned: boolean;
  status: Status;
  createdAt: string;
}

/** The server's default of "expiring soon", days. */
const EXPIRING_DAYS = 30;

async function load(): Promise<{ items: Certificate[]; expiring: Certificate[] }> {
  const [list, soon] = await Promise.all([
    api.get<{ items: Certificate[] }>('/api/certificates?limit=500'),
    api.get<{ items: Certificate[] }>(`/api/certificates/expiring-soon?days=${EXPIRING_DAYS}`),
  ]);
  return { items: list.items, expiring: soon.items };
}

function UploadForm(props: { onDone: () => Promise<void> }) {
  const t = useT('resources');
  const [file, setFile] = useState<File | null>(null);
  const [pem, setPem] = useState('');
  const [name, setName] = useState('');
  const [ca, setCa] = useState(false);
  const [formKey, setFormKey] = useState(0);
  const { busy, message, run } = useAction(t, props.onDone);
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      let content: { pem: string } | { der: string };
      if (file) {
        const text = await file.text();
        content = text.includes('-----BEGIN') ? { pem: text } : { der: await fileBase64(file) };
      } else {
        content = { pem };
      }
      const c = await api.post<Certificate>('/api/certificates', {
        ...content,
        ...(name.trim() ? { name: name.trim() } : {}),
        ...(ca ? { kind: 'ca' } : {}),
      });
      setFile(null);
      setPem('');
      setName('');
      setCa(false);
      setFormKey((k) => k + 1);
      return () => t('certificates.uploaded', { name: c.name });
    });
  };
  return (
    <form class="panel" key={formKey} onSubmit={submit} data-testid="certificate-upload">
      <h2>{t('certificates.upload.title')}</h2>
      <p class="hint">{t('certificates.upload.hint')}</p>
      <div class="form-row">
        <FilePicker caption={t('certificates.upload.file')} name="certificate" accept=".pem,.crt,.cer,.der" file={file} onChange={setFile} />
        <label>
          {t('certificates.upload.name')}
          <input name="certificateName" maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label class="checkbox">
          <input type="checkbox" checked={ca} onChange={(e) => setCa(e.currentTarget.checked)} />
          {t('certificates.upload.ca')}
        </label>
      </div>
      <label class="block">
        {t('certificates.upload.pem')}
        <textarea name="pem" rows={4} disabled={file !== null} value={pem} placeholder="-----BEGIN CERTIFICATE-----" onInput={(e) => setPem(e.currentTarget.value)} />
      </label>
      <div class="form-row actions">
        <button type="submit" class="primary" disabled={busy || (file === null && pem.trim() === '')}>
          {t('certificates.upload.submit')}
        </button>
      </div>
      <MessageLine message={message} testid="certificate-message" />
    </form>
  );
}

export function CertificatesSection() {
  const t = useT('resources');
  const operator = useCan('operator');
  const data = useLoad(t, load);
  const del = useAction(t, data.reload);
  const [confirm, setConfirm] = useState<string | null>(null);
  const remove = (c: Certificate) =>
    void del.run(async () => {
      await api.del(`/api/certificates/${c.uuid}`);
      setConfirm(null);
      return () => t('certificates.deleted', { name: c.name });
    });
  const d = data.data;
  return (
    <>
      {d && d.expiring.length > 0 ? (
        <div class="notices" data-testid="certificate-notices">
          {d.expiring.map((c) => (
            <p key={c.uuid} class="notice warn">
              {t(c.status === 'expired' ? 'certificates.notice.expired' : 'certificates.notice.expiring', {
                name: c.name,
                date: formatDate(c.notAfter),
              })}
            </p>
          ))}
        </div>
      ) : null}
      {operator ? <UploadForm onDone={data.reload} /> : null}
      <h2>{t('certificates.title')}</h2>
      <LoadError text={data.error} />
      <MessageLine message={del.message} testid="certificate-delete-message" />
      {d === null ? null : d.items.length === 0 ? (
        <p class="notice">{t('certificates.empty')}</p>
      ) : (
        <table class="data" data-testid="certificate-list">
          <thead>
            <tr>
              <th>{t('certificates.columns.name')}</th>
              <th>{t('certificates.columns.kind')}</th>
              <th>{t('certificates.columns.subject')}</th>
              <th>{t('certificates.columns.issuer')}</th>
              <th>{t('certificates.columns.validFrom')}</th>
              <th>{t('certificates.columns.validUntil')}</th>
              <th>{t('certificates.columns.status')}</th>
              <th>{t('certificates.columns.fingerprint')}</th>
              {operator ? <th /> : null}
            </tr>
          </thead>
          <tbody>
            {d.items.map((c) => (
              <tr key={c.uuid} data-name={c.name}>
                <td>{c.name}</td>
                <td>{t(c.kind === 'ca' ? 'certificates.kind.ca' : 'certificates.kind.certificate')}</td>
                <td class="wrap">{c.subject}</td>
                <td class="wrap">{c.selfSigned ? t('certificates.selfSigned') : c.issuer}</td>
                <td class="nowrap">{formatDate(c.notBefore)}</td>
                <td class="nowrap" title={formatDateTime(c.notAfter)}>
                  {formatDate(c.notAfter)}
                </td>
                <td>
                  <span class={`status cert-${c.status}`} data-testid="certificate-status">
                    {t(`certificates.status.${c.status}`)}
                  </span>
                </td>
                <td>
                  <ShortHash value={c.fingerprintSha256} />
                </td>
                {operator ? (
                  <td>
                    {confirm === c.uuid ? (
                      <div class="row-actions">
                        <button type="button" class="danger" disabled={del.busy} onClick={() => remove(c)}>
                          {t('certificates.delete')}
                        </button>
                        <button type="button" class="secondary" onClick={() => setConfirm(null)}>
                          {t('common:actions.cancel')}
                        </button>
                      </div>
                    ) : (
                      <button type="button" class="link-button" onClick={() => setConfirm(c.uuid)}>
                        {t('certificates.delete')}
                      </button>
                    )}
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
