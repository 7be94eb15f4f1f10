/**
 * The vendor firmware catalogue (shared by every account, signed by the vendor) and the account's
 * Smart Updates switch: while on, the server keeps each device on the newest compatible firmware.
 */
import { useState } from 'preact/hooks';
import { api } from '../../api.js';
import { formatDateTime, useT } from '../../i18n.js';
import { ManifestTables, type Packet, SignerText } from './packets.js';
import { formatBytes, LoadError, MessageLine, useAction, useCan, useLoad } from '../../components/page-kit.js';

interface SmartUpdates {
  enabled: boolean;
  changedAt: string | null;
}

function SmartUpdatesPanel() {
  const t = useT('resources');
  const admin = useCan('admin');
  const setting = useLoad(t, () => api.get<SmartUpdates>('/api/account/smart-updates'));
  const { busy, message, run } = useAction(t, setting.reload);
  const s = setting.data;
  const set = (enabled: boolean) =>
    void run(async () => {
      await api.put('/api/account/smart-updates', { enabled });
      return () => t(enabled ? 'firmware.smart.switchedOn' : 'firmware.smart.switchedOff');
    });
  return (
    <div class="panel" data-testid="smart-updates">
      <h2>{t('firmware.smart.title')}</h2>
      <p class="hint">{t('firmware.smart.hint')}</p>
      <LoadError text={setting.error} />
      {s ? (
        <div class="form-row">
          <span class={`status ${s.enabled ? 'active' : 'scheduled'}`} data-testid="smart-state">
            {t(s.enabled ? 'firmware.smart.on' : 'firmware.smart.off')}
          </span>
          {s.changedAt ? <span class="hint">{t('firmware.smart.changedAt', { date: formatDateTime(s.changedAt) })}</span> : null}
          {admin ? (
            <button type="button" class="secondary" disabled={busy} data-testid="smart-toggle" onClick={() => set(!s.enabled)}>
              {t(s.enabled ? 'firmware.smart.switchOff' : 'firmware.smart.switchOn')}
            </button>
          ) : null}
        </div>
      ) : null}
      <MessageLine message={message} testid="smart-message" />
    </div>
  );
}

export function FirmwareSection() {
  const t = useT('resources');
  const [model, setModel] = useState('');
  const [filter, setFilter] = useState('');
  const [open, setOpen] = useState<string | null>(null);
  const list = useLoad(
    t,
    () => api.get<{ items: Packet[]; nextCursor: string | null }>(`/api/firmware?limit=500${filter ? `&model=${encodeURIComponent(filter)}` : ''}`),
    [filter],
  );
  return (
    <>
      <SmartUpdatesPanel />
      <h2>{t('firmware.title')}</h2>
      <form
        class="form-row filter"
        onSubmit={(e) => {
          e.preventDefault();
          setFilter(model.trim());
        }}
      >
        <label>
          {t('firmware.model')}
          <input name="model" maxLength={64} value={model} onInput={(e) => setModel(e.currentTarget.value)} />
        </label>
        <button type="submit" class="secondary">
          {t('firmware.filter')}
        </button>
      </form>
      <LoadError text={list.error} />
      {list.data === null ? null : list.data.items.length === 0 ? (
        <p class="notice">{t(filter ? 'firmware.emptyModel' : 'firmware.empty')}</p>
      ) : (
        <table class="data" data-testid="firmware-list">
          <thead>
            <tr>
              <th>{t('firmware.columns.model')}</th>
              <th>{t('firmware.columns.version')}</th>
              <th>{t('packets.columns.name')}</th>
              <th>{t('packets.columns.signature')}</th>
              <th>{t('packets.columns.size')}</th>
              <th>{t('firmware.columns.added')}</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {list.data.items.flatMap((p) => [
              <tr key={p.uuid} data-model={p.model ?? ''} data-version={p.version ?? ''}>
                <td>{p.model}</td>
                <td>
                  <code>{p.version}</code>
                </td>
                <td>{p.name}</td>
                <td>
                  <SignerText packet={p} />
                </td>
                <td class="nowrap">{formatBytes(p.size)}</td>
                <td class="nowrap">{formatDateTime(p.createdAt)}</td>
                <td>
                  <button type="button" class="link-button" onClick={() => setOpen(open === p.uuid ? null : p.uuid)}>
                    {t(open === p.uuid ? 'firmware.hideManifest' : 'firmware.showManifest')}
                  </button>
                </td>
              </tr>,
              open === p.uuid ? (
                <tr key={`${p.uuid}-manifest`} class="expanded">
                  <td colSpan={7}>
                    <ManifestTables packet={p} />
                  </td>
                </tr>
              ) : null,
            ])}
          </tbody>
        </table>
      )}
      {list.data?.nextCursor ? <p class="hint">{t('firmware.more')}</p> : null}
    </>
  );
}
