/**
 * Update packets of the account: the signature policy, upload of a packet file (streamed as the
 * raw body), building one from files (signed by the server), the list, and one packet's MANIFEST.
 */
import { useState } from 'preact/hooks';
import { api } from '../../api.js';
import { FilePicker } from '../../components/file-picker.js';
import { Link } from '../../components/link.js';
import { formatDateTime, useT } from '../../i18n.js';
import { navigate } from '../../router.js';
import { fileBase64, formatBytes, LoadError, MessageLine, ShortHash, useAction, useCan, useLoad } from '../../components/page-kit.js';

export interface Section {
  fileName: string;
  fileType: string;
  size: number;
  sha256: string;
  version?: string;
  requiredSw?: string;
  description?: string;
}

export interface Packet {
  uuid: string;
  name: string;
  origin: 'upload' | 'build' | 'vendor';
  sha256: string;
  size: number;
  signed: boolean;
  signer: { subject: string; fingerprintSha256: string; notAfter: string } | null;
  header: Record<string, unknown> | null;
  sections: Section[];
  model: string | null;
  version: string | null;
  createdAt: string;
}

interface Policy {
  allowUnsigned: boolean;
  trustAnchors: string[];
}

/** Component kinds of a build (the server's COMPONENT_KINDS), in the order the form offers them. */
const KINDS = [
  'firmware',
  'firmware-incremental',
  'configuration-profile',
  'ascii-configuration',
  'certificate',
  'ca-certificate',
  'container',
  'container-configuration',
] as const;
type Kind = (typeof KINDS)[number];

interface ComponentDraft {
  key: number;
  kind: Kind;
  file: File | null;
  fileName: string;
  version: string;
}

async function allPackets(): Promise<Packet[]> {
  const out: Packet[] = [];
  let cursor: string | null = null;
  do {
    const page: { items: Packet[]; nextCursor: string | null } = await api.get(
      `/api/packets?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== null && out.length < 2000);
  return out;
}

function PolicyPanel(props: { policy: Policy; onChange: () => Promise<void> }) {
  const t = useT('resources');
  const admin = useCan('admin');
  const { busy, message, run } = useAction(t, props.onChange);
  const toggle = (allowUnsigned: boolean) =>
    void run(async () => {
      await api.put('/api/packets/policy', { allowUnsigned, trustAnchors: props.policy.trustAnchors });
      return () => t(allowUnsigned ? 'packets.policy.nowUnsigned' : 'packets.policy.nowSignedOnly');
    });
  return (
    <div class="panel" data-testid="packet-policy">
      <h2>{t('packets.policy.title')}</h2>
      <p>
        {t(props.policy.allowUnsigned ? 'packets.policy.unsignedAllowed' : 'packets.policy.signedOnly')}
        {' '}
        {t('packets.policy.anchors', { count: props.policy.trustAnchors.length })}
      </p>
      {admin ? (
        <button type="button" class="secondary" data-testid="policy-toggle" disabled={busy} onClick={() => toggle(!props.policy.allowUnsigned)}>
          {t(props.policy.allowUnsigned ? 'packets.policy.requireSigned' : 'packets.policy.allowUnsigned')}
        </button>
      ) : null}
      <MessageLine message={message} testid="policy-message" />
    </div>
  );
}

function UploadForm(props: { onDone: () => Promise<void> }) {
  const t = useT('resources');
  const [file, setFile] = useState<File | null>(null);
  const [name, setName] = useState('');
  const [formKey, setFormKey] = useState(0);
  const { busy, message, run } = useAction(t, props.onDone);
  const submit = (e: Event) => {
    e.preventDefault();
    if (!file) return;
    void run(async () => {
      const chosen = name.trim() || file.name.replace(/\.tar$/i, '');
      const p = await api.post<Packet>(`/api/packets?name=${encodeURIComponent(chosen)}`, file, { contentType: 'application/x-tar' });
      setFile(null);
      setName('');
      setFormKey((k) => k + 1);
      navigate(`/resources/packets/${p.uuid}`);
      return () => t('packets.upload.done', { name: p.name });
    });
  };
  return (
    <form class="panel" key={formKey} onSubmit={submit} data-testid="packet-upload">
      <h2>{t('packets.upload.title')}</h2>
      <p class="hint">{t('packets.upload.hint')}</p>
      <div class="form-row">
        <FilePicker caption={t('packets.upload.file')} name="packet" accept=".tar,application/x-tar" required file={file} onChange={setFile} />
        <label>
          {t('packets.upload.name')}
          <input name="packetName" maxLength={200} value={name} placeholder={file?.name.replace(/\.tar$/i, '') ?? ''} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <button type="submit" class="primary" disabled={busy || !file}>
          {t('packets.upload.submit')}
        </button>
      </div>
      <MessageLine message={message} testid="upload-message" />
    </form>
  );
}

let draftKey = 0;
const newDraft = (): ComponentDraft => ({ key: ++draftKey, kind: 'ascii-configuration', file: null, fileName: '', version: '' });

function BuildForm(props: { onDone: () => Promise<void> }) {
  const t = useT('resources');
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [models, setModels] = useState('');
  const [drafts, setDrafts] = useState<ComponentDraft[]>([newDraft()]);
  const { busy, message, run } = useAction(t, props.onDone);
  const change = (key: number, patch: Partial<ComponentDraft>) => setDrafts((ds) => ds.map((d) => (d.key === key ? { ...d, ...patch } : d)));
  const ready = name.trim() !== '' && drafts.every((d) => d.file !== null && d.fileName.trim() !== '');
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const components = await Promise.all(
        drafts.map(async (d) => ({
          kind: d.kind,
          fileName: d.fileName.trim(),
          data: await fileBase64(d.file!),
          ...(d.version.trim() ? { version: d.version.trim() } : {}),
        })),
      );
      const targetModels = models.split(',').map((m) => m.trim()).filter((m) => m !== '');
      const p = await api.post<Packet>('/api/packets/build', {
        name: name.trim(),
        components,
        ...(description.trim() ? { description: description.trim() } : {}),
        ...(targetModels.length > 0 ? { targetModels } : {}),
      });
      setName('');
      setDescription('');
      setModels('');
      setDrafts([newDraft()]);
      navigate(`/resources/packets/${p.uuid}`);
      return () => t('packets.build.done', { name: p.name });
    });
  };
  return (
    <form class="panel" onSubmit={submit} data-testid="packet-build">
      <h2>{t('packets.build.title')}</h2>
      <p class="hint">{t('packets.build.hint')}</p>
      <div class="form-row">
        <label>
          {t('packets.build.name')}
          <input name="buildName" required maxLength={200} value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          {t('packets.build.description')}
          <input name="buildDescription" maxLength={256} value={description} onInput={(e) => setDescription(e.currentTarget.value)} />
        </label>
        <label>
          {t('packets.build.models')}
          <input name="buildModels" value={models} placeholder="RUT-X11, RUT-X12" onInput={(e) => setModels(e.currentTarget.value)} />
        </label>
      </div>
      <table class="data components">
        <thead>
          <tr>
            <th>{t('packets.build.kind')}</th>
            <th>{t('packets.build.file')}</th>
            <th>{t('packets.build.fileName')}</th>
            <th>{t('packets.build.version')}</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {drafts.map((d) => (
            <tr key={d.key} data-testid="component">
              <td>
                <select aria-label={t('packets.build.kind')} value={d.kind} onChange={(e) => change(d.key, { kind: e.currentTarget.value as Kind })}>
                  {KINDS.map((k) => (
                    <option key={k} value={k}>
                      {t(`kinds.${k}`)}
                    </option>
                  ))}
                </select>
              </td>
              <td>
                <FilePicker
                  ariaLabel={t('packets.build.file')}
                  file={d.file}
                  onChange={(f) => change(d.key, { file: f, ...(f && d.fileName === '' ? { fileName: f.name } : {}) })}
                />
              </td>
              <td>
                <input aria-label={t('packets.build.fileName')} maxLength={255} value={d.fileName} onInput={(e) => change(d.key, { fileName: e.currentTarget.value })} />
              </td>
              <td>
                <input aria-label={t('packets.build.version')} maxLength={64} size={10} value={d.version} onInput={(e) => change(d.key, { version: e.currentTarget.value })} />
              </td>
              <td>
                {drafts.length > 1 ? (
                  <button type="button" class="link-button" onClick={() => setDrafts((ds) => ds.filter((x) => x.key !== d.key))}>
                    {t('packets.build.remove')}
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <div class="form-row actions">
        <button type="button" class="secondary" disabled={drafts.length >= 32} onClick={() => setDrafts((ds) => [...ds, newDraft()])}>
          {t('packets.build.add')}
        </button>
        <button type="submit" class="primary" disabled={busy || !ready}>
          {t('packets.build.submit')}
        </button>
      </div>
      <MessageLine message={message} testid="build-message" />
    </form>
  );
}

/** Signed by whom, or unsigned. */
export function SignerText(props: { packet: Packet }) {
  const t = useT('resources');
  const s = props.packet.signer;
  if (!props.packet.signed || !s) return <span class="status expired">{t('packets.unsigned')}</span>;
  return (
    <span title={s.fingerprintSha256}>
      <span class="status active">{t('packets.signed')}</span>
      {' '}
      {s.subject}
    </span>
  );
}

export function PacketList() {
  const t = useT('resources');
  const operator = useCan('operator');
  const packets = useLoad(t, allPackets);
  const policy = useLoad(t, () => api.get<Policy>('/api/packets/policy'));
  const reloadAll = async () => {
    await Promise.all([packets.reload(), policy.reload()]);
  };
  return (
    <>
      {policy.data ? <PolicyPanel policy={policy.data} onChange={policy.reload} /> : null}
      {operator ? <UploadForm onDone={reloadAll} /> : null}
      {operator ? <BuildForm onDone={reloadAll} /> : null}
      <h2>{t('packets.list')}</h2>
      <LoadError text={packets.error} />
      {packets.data === null ? null : packets.data.length === 0 ? (
        <p class="notice">{t('packets.empty')}</p>
      ) : (
        <table class="data" data-testid="packet-list">
          <thead>
            <tr>
              <th>{t('packets.columns.name')}</th>
              <th>{t('packets.columns.origin')}</th>
              <th>{t('packets.columns.contents')}</th>
              <th>{t('packets.columns.signature')}</th>
              <th>{t('packets.columns.size')}</th>
              <th>{t('packets.columns.created')}</th>
            </tr>
          </thead>
          <tbody>
            {packets.data.map((p) => (
              <tr key={p.uuid} data-name={p.name}>
                <td>
                  <Link href={`/resources/packets/${p.uuid}`}>{p.name}</Link>
                </td>
                <td>{t(`origin.${p.origin}`)}</td>
                <td>{p.sections.map((s) => t(`fileTypes.${s.fileType}`, { defaultValue: s.fileType })).join(', ')}</td>
                <td>
                  <SignerText packet={p} />
                </td>
                <td class="nowrap">{formatBytes(p.size)}</td>
                <td class="nowrap">{formatDateTime(p.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

interface Header {
  packetId?: string;
  targetModels?: string[];
  createdAt?: string;
  description?: string;
  extra?: { key: string; value: string }[];
}

/** The MANIFEST's header (KEY=value before the first FILENAME=) and sections as tables. */
export function ManifestTables(props: { packet: Packet }) {
  const t = useT('resources');
  const h = (props.packet.header ?? null) as Header | null;
  const rows: [string, string][] = [];
  if (h) {
    if (h.packetId) rows.push([t('packets.headerFields.packetId'), h.packetId]);
    if (h.createdAt) rows.push([t('packets.headerFields.createdAt'), formatDateTime(h.createdAt)]);
    rows.push([t('packets.headerFields.targetModels'), h.targetModels && h.targetModels.length > 0 ? h.targetModels.join(', ') : t('packets.anyModel')]);
    if (h.description) rows.push([t('packets.headerFields.description'), h.description]);
    for (const f of h.extra ?? []) rows.push([f.key, f.value]);
  }
  return (
    <>
      {rows.length > 0 ? (
        <table class="data keyvalue" data-testid="manifest-header">
          <tbody>
            {rows.map(([k, v]) => (
              <tr key={k}>
                <th>{k}</th>
                <td>{v}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p class="hint">{t('packets.noHeader')}</p>
      )}
      <h3>{t('packets.sections')}</h3>
      <table class="data" data-testid="manifest-sections">
        <thead>
          <tr>
            <th>#</th>
            <th>{t('packets.columns.fileName')}</th>
            <th>{t('packets.columns.fileType')}</th>
            <th>{t('packets.columns.version')}</th>
            <th>{t('packets.columns.size')}</th>
            <th>SHA-256</th>
          </tr>
        </thead>
        <tbody>
          {props.packet.sections.map((s, i) => (
            <tr key={`${i}-${s.fileName}`}>
              <td>{i + 1}</td>
              <td>
                <code>{s.fileName}</code>
                {s.description ? <div class="hint">{s.description}</div> : null}
              </td>
              <td>{t(`fileTypes.${s.fileType}`, { defaultValue: s.fileType })}</td>
              <td>{s.version ?? ''}</td>
              <td class="nowrap">{formatBytes(s.size)}</td>
              <td>
                <ShortHash value={s.sha256} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function PacketDetail(props: { uuid: string }) {
  const t = useT('resources');
  const operator = useCan('operator');
  const packet = useLoad(t, () => api.get<Packet>(`/api/packets/${props.uuid}`), [props.uuid]);
  const manifest = useLoad(t, () => api.get<{ text: string }>(`/api/packets/${props.uuid}/manifest`), [props.uuid]);
  const { busy, message, run } = useAction(t);
  const [confirm, setConfirm] = useState(false);
  const remove = () =>
    void run(async () => {
      await api.del(`/api/packets/${props.uuid}`);
      navigate('/resources/packets');
      return () => t('packets.deleted');
    });
  const p = packet.data;
  return (
    <div data-testid="packet-detail">
      <p>
        <Link href="/resources/packets">{t('packets.back')}</Link>
      </p>
      <LoadError text={packet.error} />
      {p ? (
        <>
          <h2 data-testid="packet-name">{p.name}</h2>
          <table class="data keyvalue">
            <tbody>
              <tr>
                <th>{t('packets.columns.origin')}</th>
                <td>{t(`origin.${p.origin}`)}</td>
              </tr>
              <tr>
                <th>{t('packets.columns.signature')}</th>
                <td>
                  <SignerText packet={p} />
                </td>
              </tr>
              {p.signer ? (
                <tr>
                  <th>{t('packets.signerValidUntil')}</th>
                  <td>{formatDateTime(p.signer.notAfter)}</td>
                </tr>
              ) : null}
              <tr>
                <th>{t('packets.columns.size')}</th>
                <td>{formatBytes(p.size)}</td>
              </tr>
              <tr>
                <th>SHA-256</th>
                <td>
                  <code class="wrap">{p.sha256}</code>
                </td>
              </tr>
              <tr>
                <th>{t('packets.columns.created')}</th>
                <td>{formatDateTime(p.createdAt)}</td>
              </tr>
            </tbody>
          </table>
          <h3>{t('packets.header')}</h3>
          <ManifestTables packet={p} />
          <h3>{t('packets.manifest')}</h3>
          <LoadError text={manifest.error} />
          {manifest.data ? (
            <pre class="manifest" data-testid="manifest">
              {manifest.data.text}
            </pre>
          ) : null}
          {operator ? (
            <div class="form-row actions">
              {confirm ? (
                <>
                  <span>{t('packets.confirmDelete', { name: p.name })}</span>
                  <button type="button" class="danger" disabled={busy} data-testid="confirm-delete" onClick={remove}>
                    {t('packets.delete')}
                  </button>
                  <button type="button" class="secondary" onClick={() => setConfirm(false)}>
                    {t('common:actions.cancel')}
                  </button>
                </>
              ) : (
                <button type="button" class="secondary" data-testid="delete-packet" onClick={() => setConfirm(true)}>
                  {t('packets.delete')}
                </button>
              )}
            </div>
          ) : null}
        </>
      ) : null}
      <MessageLine message={message} testid="packet-message" />
    </div>
  );
}
