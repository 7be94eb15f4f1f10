/**
 * A device's settings on its details page: custom fields (name → text) and the keep-alive
 * parameters the server hands the router when it connects. The server checks every value; what it
 * refuses is explained in the user's language from the rule it names (SERVER_VALIDATION details).
 */
import type { TFunction } from 'i18next';
import { useState } from 'preact/hooks';
import { api } from '../api.js';
import type { FieldNames } from '../components/error-text.js';
import { MessageLine, SubmitRow, useAction } from '../components/page-kit.js';
import { useT } from '../i18n.js';

export const KEEPALIVE_FIELDS = ['connectionPingInterval', 'connectionPongTimeout', 'connectionSessionTimeout'] as const;
type KeepAliveField = (typeof KEEPALIVE_FIELDS)[number];

/** The server's defaults (seconds), shown beside the inputs. */
const KEEPALIVE_DEFAULTS: Record<KeepAliveField, number> = {
  connectionPingInterval: 120,
  connectionPongTimeout: 104,
  connectionSessionTimeout: 16,
};

const METADATA_FIELDS = ['name', 'location', 'model', 'firmware', 'latitude', 'longitude'];

export interface SettingsDevice {
  uuid: string;
  customFields: Record<string, string>;
  connectionPingInterval: number;
  connectionPongTimeout: number;
  connectionSessionTimeout: number;
}

/** A number typed in (a decimal comma accepted); anything else goes to the server as typed, which refuses it by rule. */
export function typedNumber(text: string): number | string {
  const v = text.trim();
  return /^[-+]?\d+([.,]\d+)?$/.test(v) ? Number(v.replace(',', '.')) : v;
}

const pointerPart = (p: string) => p.replace(/~1/g, '/').replace(/~0/g, '~');

/** Names of the device's fields in validation messages. */
export function deviceFieldNames(t: TFunction): FieldNames {
  return {
    label: (field) => {
      const [, top = '', ...rest] = field.split('/');
      if (top === 'customFields') return rest.length === 0 ? t('customFields.title') : t('customFields.field', { name: pointerPart(rest.join('/')) });
      if ((KEEPALIVE_FIELDS as readonly string[]).includes(top)) return t(`keepAlive.${top}`);
      if (top === 'groupUuid') return t('details.group');
      if (METADATA_FIELDS.includes(top)) return t(`details.${top}`);
      return undefined;
    },
    message: (d) =>
      d.rule === 'unknownProperty' && d.field.startsWith('/customFields/')
        ? t('customFields.badName', { name: pointerPart(d.field.slice('/customFields/'.length)) })
        : undefined,
  };
}

async function patchDevice<D extends SettingsDevice>(uuid: string, body: Record<string, unknown>): Promise<D> {
  return api.patch<D>(`/api/inventory/managed-devices/${uuid}`, body);
}

interface FieldRow {
  readonly id: number;
  name: string;
  value: string;
}

let rowSeq = 0;
const rowsOf = (fields: Record<string, string>): FieldRow[] => Object.entries(fields).map(([name, value]) => ({ id: ++rowSeq, name, value }));

export function CustomFieldsPanel<D extends SettingsDevice>(props: { device: D; canChange: boolean; onSaved: (device: D) => void }) {
  const t = useT('devices');
  const [rows, setRows] = useState<FieldRow[]>(() => rowsOf(props.device.customFields));
  const { busy, message, setMessage, run } = useAction(t, undefined, deviceFieldNames(t));
  const change = (id: number, patch: Partial<FieldRow>) => {
    setRows(rows.map((r) => (r.id === id ? { ...r, ...patch } : r)));
    setMessage(null);
  };
  const save = (e: Event) => {
    e.preventDefault();
    const fields: Record<string, string> = {};
    for (const r of rows) {
      const name = r.name.trim();
      if (name === '' && r.value === '') continue;
      if (Object.hasOwn(fields, name)) {
        setMessage({ kind: 'error', text: () => t('customFields.duplicate', { name }) });
        return;
      }
      fields[name] = r.value;
    }
    void run(async () => {
      const updated = await patchDevice<D>(props.device.uuid, { customFields: fields });
      setRows(rowsOf(updated.customFields));
      props.onSaved(updated);
      return () => t('details.saved');
    });
  };
  return (
    <section class="panel" data-testid="custom-fields">
      <h2>{t('customFields.title')}</h2>
      <form class="stacked" onSubmit={save} noValidate>
        {rows.length === 0 ? <p class="muted">{t('customFields.none')}</p> : null}
        {rows.map((r, i) => (
          <div class="field-row" key={r.id} data-testid="custom-field">
            <label>
              <span>{t('customFields.name')}</span>
              <input name={`customFieldName${i}`} value={r.name} disabled={!props.canChange} onInput={(e) => change(r.id, { name: (e.currentTarget as HTMLInputElement).value })} />
            </label>
            <label>
              <span>{t('customFields.value')}</span>
              <input name={`customFieldValue${i}`} value={r.value} disabled={!props.canChange} onInput={(e) => change(r.id, { value: (e.currentTarget as HTMLInputElement).value })} />
            </label>
            {props.canChange ? (
              <button type="button" class="secondary" aria-label={t('customFields.removeNamed', { name: r.name })} onClick={() => setRows(rows.filter((x) => x.id !== r.id))}>
                {t('customFields.remove')}
              </button>
            ) : null}
          </div>
        ))}
        {props.canChange ? (
          <SubmitRow busy={busy} label={t('details.save')} testid="custom-fields-save">
            <button type="button" class="secondary" data-testid="custom-field-add" onClick={() => setRows([...rows, { id: ++rowSeq, name: '', value: '' }])}>
              {t('customFields.add')}
            </button>
          </SubmitRow>
        ) : null}
        <MessageLine message={message} testid="custom-fields-message" />
      </form>
    </section>
  );
}

type KeepAliveDraft = Record<KeepAliveField, string>;
const keepAliveOf = (d: SettingsDevice): KeepAliveDraft =>
  Object.fromEntries(KEEPALIVE_FIELDS.map((f) => [f, String(d[f])])) as KeepAliveDraft;

export function KeepAlivePanel<D extends SettingsDevice>(props: { device: D; canChange: boolean; onSaved: (device: D) => void }) {
  const t = useT('devices');
  const [draft, setDraft] = useState<KeepAliveDraft>(() => keepAliveOf(props.device));
  const { busy, message, setMessage, run } = useAction(t, undefined, deviceFieldNames(t));
  const save = (e: Event) => {
    e.preventDefault();
    const body: Record<string, unknown> = {};
    for (const f of KEEPALIVE_FIELDS) if (draft[f] !== String(props.device[f])) body[f] = typedNumber(draft[f]);
    void run(async () => {
      const updated = await patchDevice<D>(props.device.uuid, body);
      setDraft(keepAliveOf(updated));
      props.onSaved(updated);
      return () => t('details.saved');
    });
  };
  return (
    <section class="panel" data-testid="keep-alive">
      <h2>{t('keepAlive.title')}</h2>
      <p class="muted">{t('keepAlive.text')}</p>
      <form class="stacked" onSubmit={save} noValidate>
        {KEEPALIVE_FIELDS.map((f) => (
          <label key={f}>
            <span>{t(`keepAlive.${f}`)}</span>
            <span class="with-unit">
              <input
                name={f}
                inputMode="numeric"
                value={draft[f]}
                disabled={!props.canChange}
                onInput={(e) => {
                  setDraft({ ...draft, [f]: (e.currentTarget as HTMLInputElement).value });
                  setMessage(null);
                }}
              />
              <span class="muted">{t('keepAlive.unit', { default: KEEPALIVE_DEFAULTS[f] })}</span>
            </span>
          </label>
        ))}
        {props.canChange ? (
          <SubmitRow busy={busy} label={t('details.save')} testid="keep-alive-save" />
        ) : null}
        <MessageLine message={message} testid="keep-alive-message" />
      </form>
    </section>
  );
}
