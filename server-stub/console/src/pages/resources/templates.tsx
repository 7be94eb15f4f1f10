/**
 * Configuration templates (Basic and Pro): the list, create and edit, and per-device parameters.
 * A template's `{{custom.<key>}}` placeholders are filled from each device's custom fields and its
 * `{{group.<key>}}` ones from the template values of the device's group; the parameters panel edits
 * both for one chosen device and previews the text that device would receive.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, ApiError } from '../../api.js';
import { errorText } from '../../components/error-text.js';
import { Link } from '../../components/link.js';
import { formatDateTime, useT } from '../../i18n.js';
import { navigate } from '../../router.js';
import { LoadError, MessageLine, SubmitRow, useAction, useCan, useLoad } from '../../components/page-kit.js';

const KINDS = ['ascii-configuration', 'configuration-profile', 'container-configuration'] as const;
type Kind = (typeof KINDS)[number];

/** The device fields a `{{device.<field>}}` placeholder may name (the server's list). */
const DEVICE_FIELDS = ['uuid', 'serialNumber', 'name', 'location', 'model', 'firmware', 'latitude', 'longitude', 'groupName'];

interface Template {
  uuid: string;
  name: string;
  kind: Kind;
  fileName: string;
  description: string;
  body: string;
  createdAt: string;
  updatedAt: string | null;
}

interface Device {
  uuid: string;
  serialNumber: string;
  name: string;
  groupUuid: string | null;
  customFields: Record<string, string>;
}

interface Group {
  uuid: string;
  name: string;
}

interface Preview {
  placeholders: string[];
  rendered: string;
}

/** The placeholders of a template body, as the server reads them (`{{ ns.key }}`). */
export function placeholdersOf(body: string): { namespace: string; key: string }[] {
  const out = new Map<string, { namespace: string; key: string }>();
  for (const m of body.matchAll(/\{\{\s*([^{}]*?)\s*\}\}/g)) {
    const p = /^(device|custom|group)\.([A-Za-z][A-Za-z0-9_]{0,63})$/.exec(m[1]!);
    if (p) out.set(m[1]!, { namespace: p[1]!, key: p[2]! });
  }
  return [...out.values()];
}

interface Draft {
  name: string;
  kind: Kind;
  fileName: string;
  description: string;
  body: string;
}

const EMPTY: Draft = { name: '', kind: 'ascii-configuration', fileName: 'config.txt', description: '', body: '' };

function TemplateForm(props: { initial: Draft; submitLabel: string; onSubmit: (d: Draft) => Promise<() => string>; testid: string; readOnly: boolean }) {
  const t = useT('resources');
  const [d, setD] = useState<Draft>(props.initial);
  const { busy, message, run } = useAction(t);
  useEffect(() => setD(props.initial), [props.initial]);
  const set = (patch: Partial<Draft>) => setD((x) => ({ ...x, ...patch }));
  return (
    <form
      class="panel"
      data-testid={props.testid}
      onSubmit={(e) => {
        e.preventDefault();
        void run(() => props.onSubmit(d));
      }}
    >
      <div class="form-row">
        <label>
          {t('templates.fields.name')}
          <input name="templateName" required maxLength={100} readOnly={props.readOnly} value={d.name} onInput={(e) => set({ name: e.currentTarget.value })} />
        </label>
        <label>
          {t('templates.fields.kind')}
          <select name="templateKind" disabled={props.readOnly} value={d.kind} onChange={(e) => set({ kind: e.currentTarget.value as Kind })}>
            {KINDS.map((k) => (
              <option key={k} value={k}>
                {t(`kinds.${k}`)}
              </option>
            ))}
          </select>
        </label>
        <label>
          {t('templates.fields.fileName')}
          <input name="templateFileName" required maxLength={255} pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" readOnly={props.readOnly} value={d.fileName} onInput={(e) => set({ fileName: e.currentTarget.value })} />
        </label>
        <label class="grow">
          {t('templates.fields.description')}
          <input name="templateDescription" maxLength={256} readOnly={props.readOnly} value={d.description} onInput={(e) => set({ description: e.currentTarget.value })} />
        </label>
      </div>
      <label class="block">
        {t('templates.fields.body')}
        <textarea name="templateBody" class="code" rows={10} required maxLength={262_144} readOnly={props.readOnly} value={d.body} onInput={(e) => set({ body: e.currentTarget.value })} />
      </label>
      <div class="hint placeholder-help">
        {t('templates.help.intro')}
        <ul>
          <li>
            <code>{'{{device.<field>}}'}</code>
            {' '}
            {t('templates.help.device', { fields: DEVICE_FIELDS.join(', ') })}
          </li>
          <li>
            <code>{'{{custom.<key>}}'}</code>
            {' '}
            {t('templates.help.custom')}
          </li>
          <li>
            <code>{'{{group.<key>}}'}</code>
            {' '}
            {t('templates.help.group')}
          </li>
        </ul>
      </div>
      {props.readOnly ? null : <SubmitRow class="form-row actions" busy={busy} label={props.submitLabel} />}
      <MessageLine message={message} testid={`${props.testid}-message`} />
    </form>
  );
}

export function TemplateList() {
  const t = useT('resources');
  const operator = useCan('operator');
  const list = useLoad(t, () => api.get<{ items: Template[] }>('/api/configuration-templates?limit=500'));
  const create = async (d: Draft) => {
    const created = await api.post<Template>('/api/configuration-templates', d);
    navigate(`/resources/templates/${created.uuid}`);
    return () => t('templates.created', { name: created.name });
  };
  return (
    <>
      <h2>{t('templates.title')}</h2>
      <LoadError text={list.error} />
      {list.data === null ? null : list.data.items.length === 0 ? (
        <p class="notice">{t('templates.empty')}</p>
      ) : (
        <table class="data" data-testid="template-list">
          <thead>
            <tr>
              <th>{t('templates.fields.name')}</th>
              <th>{t('templates.fields.kind')}</th>
              <th>{t('templates.fields.fileName')}</th>
              <th>{t('templates.fields.description')}</th>
              <th>{t('templates.changed')}</th>
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((x) => (
              <tr key={x.uuid} data-name={x.name}>
                <td>
                  <Link href={`/resources/templates/${x.uuid}`}>{x.name}</Link>
                </td>
                <td>{t(`kinds.${x.kind}`)}</td>
                <td>
                  <code>{x.fileName}</code>
                </td>
                <td>{x.description}</td>
                <td class="nowrap">{formatDateTime(x.updatedAt ?? x.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {operator && list.error === null ? (
        <>
          <h2>{t('templates.new')}</h2>
          <TemplateForm initial={EMPTY} submitLabel={t('templates.create')} onSubmit={create} testid="template-create" readOnly={false} />
        </>
      ) : null}
    </>
  );
}

/** Key/value inputs for the parameters a template names in one namespace. */
function ParameterInputs(props: {
  keys: string[];
  values: Record<string, string>;
  prefix: string;
  onChange: (values: Record<string, string>) => void;
  readOnly: boolean;
}) {
  return (
    <table class="data keyvalue">
      <tbody>
        {props.keys.map((k) => (
          <tr key={k}>
            <th>
              <code>{`${props.prefix}.${k}`}</code>
            </th>
            <td>
              <input
                data-param={`${props.prefix}.${k}`}
                aria-label={`${props.prefix}.${k}`}
                maxLength={props.prefix === 'custom' ? 1000 : 4096}
                readOnly={props.readOnly}
                value={props.values[k] ?? ''}
                onInput={(e) => props.onChange({ ...props.values, [k]: e.currentTarget.value })}
              />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function DeviceParameters(props: { template: Template }) {
  const t = useT('resources');
  const operator = useCan('operator');
  const [search, setSearch] = useState('');
  const [matches, setMatches] = useState<Device[] | null>(null);
  const [device, setDevice] = useState<Device | null>(null);
  const [group, setGroup] = useState<Group | null>(null);
  const [custom, setCustom] = useState<Record<string, string>>({});
  const [groupValues, setGroupValues] = useState<Record<string, string>>({});
  const [preview, setPreview] = useState<{ text: string } | { missing: string[] } | { error: unknown } | null>(null);
  const { busy, message, run } = useAction(t);
  const params = placeholdersOf(props.template.body);
  const customKeys = params.filter((p) => p.namespace === 'custom').map((p) => p.key);
  const groupKeys = params.filter((p) => p.namespace === 'group').map((p) => p.key);

  const find = async (e: Event) => {
    e.preventDefault();
    const q = search.trim();
    const page = await api.get<{ items: Device[] }>(`/api/inventory/managed-devices?limit=10${q ? `&text=${encodeURIComponent(q)}` : ''}`);
    setMatches(page.items);
  };
  const renderPreview = async (d: Device) => {
    try {
      const p = await api.post<Preview>(`/api/configuration-templates/${props.template.uuid}/preview`, { deviceUuid: d.uuid });
      setPreview({ text: p.rendered });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'SERVER_TEMPLATE_VALUE_MISSING') {
        const missing = (err.details as { missing?: unknown } | undefined)?.missing;
        setPreview({ missing: Array.isArray(missing) ? missing.map(String) : [] });
      } else setPreview({ error: err });
    }
  };
  const choose = async (d: Device) => {
    setMatches(null);
    setDevice(d);
    setCustom({ ...d.customFields });
    setGroup(null);
    setGroupValues({});
    if (d.groupUuid) {
      const [g, v] = await Promise.all([
        api.get<Group>(`/api/inventory/device-groups/${d.groupUuid}`),
        api.get<{ values: Record<string, string> }>(`/api/inventory/device-groups/${d.groupUuid}/template-values`),
      ]);
      setGroup(g);
      setGroupValues(v.values);
    }
    await renderPreview(d);
  };
  const save = (e: Event) => {
    e.preventDefault();
    if (!device) return;
    void run(async () => {
      // Empty inputs are left out: a parameter without a value stays missing (the preview says so).
      const fields = Object.fromEntries(Object.entries(custom).filter(([, v]) => v !== ''));
      const updated = await api.patch<Device>(`/api/inventory/managed-devices/${device.uuid}`, { customFields: fields });
      setDevice(updated);
      if (group && groupKeys.length > 0) {
        const values = Object.fromEntries(Object.entries(groupValues).filter(([, v]) => v !== ''));
        await api.put(`/api/inventory/device-groups/${group.uuid}/template-values`, { values });
      }
      await renderPreview(updated);
      return () => t('templates.params.saved', { device: updated.name || updated.serialNumber });
    });
  };

  return (
    <div class="panel" data-testid="device-parameters">
      <h2>{t('templates.params.title')}</h2>
      <p class="hint">{t('templates.params.hint')}</p>
      <form class="form-row" onSubmit={(e) => void find(e).catch((err) => setPreview({ error: err }))}>
        <label>
          {t('templates.params.search')}
          <input name="deviceSearch" maxLength={100} value={search} onInput={(e) => setSearch(e.currentTarget.value)} />
        </label>
        <button type="submit" class="secondary">
          {t('templates.params.find')}
        </button>
      </form>
      {matches !== null ? (
        matches.length === 0 ? (
          <p class="notice">{t('templates.params.noDevice')}</p>
        ) : (
          <ul class="choices" data-testid="device-matches">
            {matches.map((d) => (
              <li key={d.uuid}>
                <button type="button" class="link-button" onClick={() => void choose(d).catch((err) => setPreview({ error: err }))}>
                  {d.name ? `${d.name} (${d.serialNumber})` : d.serialNumber}
                </button>
              </li>
            ))}
          </ul>
        )
      ) : null}
      {device ? (
        <form onSubmit={save} data-testid="parameter-form">
          <h3 data-testid="parameter-device">{t('templates.params.of', { device: device.name ? `${device.name} (${device.serialNumber})` : device.serialNumber })}</h3>
          {customKeys.length === 0 && groupKeys.length === 0 ? <p class="hint">{t('templates.params.none')}</p> : null}
          {customKeys.length > 0 ? (
            <>
              <h4>{t('templates.params.custom')}</h4>
              <ParameterInputs keys={customKeys} values={custom} prefix="custom" onChange={setCustom} readOnly={!operator} />
            </>
          ) : null}
          {groupKeys.length > 0 ? (
            <>
              <h4>{group ? t('templates.params.group', { group: group.name }) : t('templates.params.noGroup')}</h4>
              {group ? <ParameterInputs keys={groupKeys} values={groupValues} prefix="group" onChange={setGroupValues} readOnly={!operator} /> : null}
            </>
          ) : null}
          {operator && (customKeys.length > 0 || (group && groupKeys.length > 0)) ? (
            <SubmitRow class="form-row actions" busy={busy} label={t('templates.params.save')} testid="save-parameters" />
          ) : null}
          <MessageLine message={message} testid="parameter-message" />
        </form>
      ) : null}
      {preview ? (
        <div data-testid="template-preview">
          <h3>{t('templates.preview.title')}</h3>
          {'text' in preview ? (
            <pre class="manifest">{preview.text}</pre>
          ) : 'missing' in preview ? (
            <p class="notice warn" data-testid="preview-missing">
              {t('templates.preview.missing', { placeholders: preview.missing.map((m) => `{{${m}}}`).join(', ') })}
            </p>
          ) : (
            <p class="error">{errorText(t, preview.error)}</p>
          )}
        </div>
      ) : null}
    </div>
  );
}

export function TemplateDetail(props: { uuid: string }) {
  const t = useT('resources');
  const operator = useCan('operator');
  const tpl = useLoad(t, () => api.get<Template>(`/api/configuration-templates/${props.uuid}`), [props.uuid]);
  const del = useAction(t);
  const [confirm, setConfirm] = useState(false);
  const x = tpl.data;
  // The form starts over only when the template itself changed (loaded or saved).
  const initial = useMemo<Draft>(
    () => (x ? { name: x.name, kind: x.kind, fileName: x.fileName, description: x.description, body: x.body } : EMPTY),
    [x],
  );
  const save = async (d: Draft) => {
    await api.patch<Template>(`/api/configuration-templates/${props.uuid}`, d);
    await tpl.reload();
    return () => t('templates.saved', { name: d.name });
  };
  const remove = () =>
    void del.run(async () => {
      await api.del(`/api/configuration-templates/${props.uuid}`);
      navigate('/resources/templates');
      return () => t('templates.deleted');
    });
  return (
    <div data-testid="template-detail">
      <p>
        <Link href="/resources/templates">{t('templates.back')}</Link>
      </p>
      <LoadError text={tpl.error} />
      {x ? (
        <>
          <h2 data-testid="template-name">{x.name}</h2>
          <TemplateForm
            initial={initial}
            submitLabel={t('common:actions.save')}
            onSubmit={save}
            testid="template-edit"
            readOnly={!operator}
          />
          <DeviceParameters template={x} />
          {operator ? (
            <div class="form-row actions">
              {confirm ? (
                <>
                  <span>{t('templates.confirmDelete', { name: x.name })}</span>
                  <button type="button" class="danger" disabled={del.busy} onClick={remove}>
                    {t('templates.delete')}
                  </button>
                  <button type="button" class="secondary" onClick={() => setConfirm(false)}>
                    {t('common:actions.cancel')}
                  </button>
                </>
              ) : (
                <button type="button" class="secondary" onClick={() => setConfirm(true)}>
                  {t('templates.delete')}
                </button>
              )}
            </div>
          ) : null}
          <MessageLine message={del.message} testid="template-delete-message" />
        </>
      ) : null}
    </div>
  );
}
