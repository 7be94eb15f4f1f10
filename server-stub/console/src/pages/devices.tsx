/**
 * Devices: the list (online status, admission, latest event; filters, sorting and cursor paging,
 * all done by the server, so it stays fast at 50,000 devices) and one device's details (metadata
 * editing, events, job history). Both follow the live stream: when the fleet's counts change or
 * new events arrive, the page shown is read again, so routers coming online show without a reload.
 */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { allGroups, DevicesHeader, type GroupChoice } from '../components/device-groups.js';
import { errorText } from '../components/error-text.js';
import { EventList, eventTitle } from '../components/event-list.js';
import { Link } from '../components/link.js';
import { LoadError, MessageLine, useAction, useLoad } from '../components/page-kit.js';
import { type Column, type Page, PagedTable, usePagedList, useThrottle } from '../components/paged-table.js';
import { formatDateTime, useT } from '../i18n.js';
import { type FleetEvent, useLiveStream } from '../live.js';
import type { PageProps } from '../router.js';
import { useSession } from '../session.js';
import { CustomFieldsPanel, deviceFieldNames, KeepAlivePanel, typedNumber } from './device-settings.js';
import '../styles/fleet.css';

type Status = 'online' | 'unmanaged' | 'offline';
type Admission = 'managed' | 'unmanaged' | 'rejected';

interface Device {
  uuid: string;
  serialNumber: string;
  name: string;
  location: string;
  groupUuid: string | null;
  model: string | null;
  firmware: string | null;
  connectionPingInterval: number;
  connectionPongTimeout: number;
  connectionSessionTimeout: number;
  customFields: Record<string, string>;
  latitude: number | null;
  longitude: number | null;
  reported: { model: string | null; firmware: string | null; position: { latitude: number; longitude: number; at: string } | null };
  status: Status;
  admission: Admission | null;
  admissionReason: string | null;
  connectedAt: string | null;
  lastSeenAt: string | null;
  createdAt: string;
}

interface DeviceJob {
  jobUuid: string;
  jobName: string;
  jobState: string;
  jobCreatedAt: string;
  status: string;
  result: string | null;
  attempts: number;
  state: string | null;
  errorCode: string | null;
  updatedAt: string | null;
}

const PAGE_SIZE = 50;
/** Live changes read the shown page again at most this often (ms). */
const LIVE_RELOAD_MS = 1_500;
const SORTS = ['name', 'serialNumber', 'createdAt', 'lastSeenAt'] as const;

interface Query {
  text: string;
  groupUuid: string;
  status: '' | Status;
  admission: '' | Admission | 'none';
  model: string;
  firmware: string;
  sort: (typeof SORTS)[number];
  order: 'asc' | 'desc';
}

function queryFromLocation(): Query {
  const p = new URLSearchParams(location.search);
  const pick = <T extends string>(key: string, allowed: readonly T[], fallback: T): T => {
    const v = p.get(key) as T | null;
    return v !== null && allowed.includes(v) ? v : fallback;
  };
  return {
    text: p.get('text') ?? '',
    groupUuid: p.get('groupUuid') ?? '',
    status: pick('status', ['', 'online', 'unmanaged', 'offline'], ''),
    admission: pick('admission', ['', 'managed', 'unmanaged', 'rejected', 'none'], ''),
    model: p.get('model') ?? '',
    firmware: p.get('firmware') ?? '',
    sort: pick('sort', SORTS, 'name'),
    order: pick('order', ['asc', 'desc'], 'asc'),
  };
}

function toSearch(q: Query): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== '' && !(k === 'sort' && v === 'name') && !(k === 'order' && v === 'asc')) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

function StatusBadge(props: { status: Status }) {
  const t = useT('fleet');
  return <span class={`badge status-${props.status}`}>{t(`status.${props.status}`)}</span>;
}

function AdmissionBadge(props: { admission: Admission | null }) {
  const t = useT('fleet');
  const a = props.admission ?? 'none';
  return <span class={`badge admission-${a}`}>{t(`admission.${a}`)}</span>;
}

function DeviceList() {
  const t = useT('devices');
  const canChange = useSession().user.role !== 'viewer';
  const tf = useT('fleet');
  const [query, setQuery] = useState<Query>(queryFromLocation);
  const [draft, setDraft] = useState<Query>(query);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  // The groups to filter by and to add to; a failed read says so (not "no groups").
  const groupList = useLoad(t, allGroups);
  const groups = groupList.data ?? [];

  // A page of devices, each with its latest event (read right after the page, shown with it).
  const list = usePagedList(async (cursor): Promise<Page<Device> & { latest: Map<string, FleetEvent> }> => {
    const p = new URLSearchParams({ limit: String(PAGE_SIZE), sort: query.sort, order: query.order });
    for (const k of ['text', 'groupUuid', 'status', 'admission', 'model', 'firmware'] as const) if (query[k] !== '') p.set(k, query[k]);
    if (cursor) p.set('cursor', cursor);
    const result = await api.get<Page<Device>>(`/api/inventory/managed-devices?${p.toString()}`);
    const uuids = result.items.map((d) => d.uuid);
    const events = uuids.length ? (await api.get<{ items: FleetEvent[] }>(`/api/events/latest?deviceUuids=${uuids.join(',')}`)).items : [];
    return { ...result, latest: new Map(events.map((e) => [e.subject ?? '', e])) };
  }, query);

  const reload = useThrottle(() => void list.reload(), LIVE_RELOAD_MS);
  const first = useRef(true);
  useLiveStream({
    hello: () => (first.current ? (first.current = false) : reload()),
    counts: () => reload(),
    events: ({ snapshot }) => {
      if (!snapshot) reload();
    },
  });

  const apply = (q: Query) => {
    setQuery(q);
    history.replaceState(null, '', `/devices${toSearch(q)}`);
  };

  const field = (key: 'text' | 'model' | 'firmware') => (
    <label>
      <span>{t(`filters.${key}`)}</span>
      <input
        name={key}
        value={draft[key]}
        placeholder={key === 'text' ? t('filters.textPlaceholder') : ''}
        onInput={(e) => setDraft({ ...draft, [key]: (e.currentTarget as HTMLInputElement).value })}
      />
    </label>
  );
  const select = <K extends 'status' | 'admission' | 'groupUuid'>(key: K, values: readonly string[], label: (v: string) => string) => (
    <label>
      <span>{t(`filters.${key}`)}</span>
      <select
        name={key}
        value={draft[key]}
        onChange={(e) => {
          const next = { ...draft, [key]: (e.currentTarget as HTMLSelectElement).value } as Query;
          setDraft(next);
          apply(next);
        }}
      >
        <option value="">{t('filters.any')}</option>
        {values.map((v) => (
          <option key={v} value={v}>
            {label(v)}
          </option>
        ))}
      </select>
    </label>
  );
  const sortBy = (sort: Query['sort'], order: Query['order']) => {
    const next = { ...draft, sort, order };
    setDraft(next);
    apply(next);
  };

  const columns: Column<Device>[] = [
    {
      id: 'name',
      header: t('columns.name'),
      sort: 'name',
      cell: (d) => (
        <Link href={`/devices/${d.uuid}`} class="device-name">
          {d.name || t('unnamed')}
        </Link>
      ),
    },
    { id: 'serialNumber', header: t('columns.serialNumber'), sort: 'serialNumber', class: 'mono', cell: (d) => d.serialNumber },
    { id: 'status', header: t('columns.status'), cell: (d) => <StatusBadge status={d.status} /> },
    { id: 'admission', header: t('columns.admission'), cell: (d) => <AdmissionBadge admission={d.admission} /> },
    { id: 'model', header: t('columns.model'), cell: (d) => d.reported.model ?? d.model ?? '' },
    { id: 'firmware', header: t('columns.firmware'), cell: (d) => d.reported.firmware ?? d.firmware ?? '' },
    { id: 'lastSeen', header: t('columns.lastSeen'), sort: 'lastSeenAt', cell: (d) => (d.lastSeenAt ? formatDateTime(d.lastSeenAt) : t('never')) },
    {
      id: 'latestEvent',
      header: t('columns.latestEvent'),
      cell: (d) => {
        const e = list.page?.latest.get(d.uuid);
        return e ? `${eventTitle(tf, e)} · ${formatDateTime(e.at)}` : '';
      },
    },
  ];

  return (
    <section class="page devices">
      <DevicesHeader title={t('title')} current="devices" />
      <form
        class="filters"
        aria-label={t('filters.label')}
        onSubmit={(e) => {
          e.preventDefault();
          apply(draft);
        }}
      >
        {field('text')}
        {groups.length > 0 ? select('groupUuid', groups.map((g) => g.uuid), (v) => groups.find((g) => g.uuid === v)?.name ?? v) : null}
        {select('status', ['online', 'unmanaged', 'offline'], (v) => tf(`status.${v}`))}
        {select('admission', ['managed', 'unmanaged', 'rejected', 'none'], (v) => tf(`admission.${v}`))}
        {field('model')}
        {field('firmware')}
        <label>
          <span>{t('sort.label')}</span>
          <select
            name="sort"
            value={`${draft.sort}:${draft.order}`}
            onChange={(e) => {
              const [sort, order] = (e.currentTarget as HTMLSelectElement).value.split(':') as [Query['sort'], Query['order']];
              sortBy(sort, order);
            }}
          >
            {SORTS.flatMap((s) =>
              (['asc', 'desc'] as const).map((o) => (
                <option key={`${s}:${o}`} value={`${s}:${o}`}>
                  {t(`sort.${s}`)}
                  {' '}
                  (
                  {t(`sort.${o}`)}
                  )
                </option>
              )),
            )}
          </select>
        </label>
        <div class="filter-actions">
          <button type="submit" class="primary">
            {t('filters.apply')}
          </button>
          <button
            type="button"
            class="secondary"
            onClick={() => {
              const empty: Query = { text: '', groupUuid: '', status: '', admission: '', model: '', firmware: '', sort: 'name', order: 'asc' };
              setDraft(empty);
              apply(empty);
            }}
          >
            {t('filters.clear')}
          </button>
        </div>
      </form>
      <LoadError text={groupList.error} />
      {canChange ? (
        <AddToGroupBar
          groups={groups}
          selected={selected}
          onClear={() => setSelected(new Set())}
          onAdded={() => {
            setSelected(new Set());
            void groupList.reload();
            void list.reload();
          }}
        />
      ) : null}
      <PagedTable
        list={list}
        columns={columns}
        rowKey={(d) => d.uuid}
        rowAttrs={(d) => ({ 'data-serial': d.serialNumber, 'data-status': d.status, 'data-admission': d.admission ?? 'none' })}
        testId="device-table"
        tableClass="device-table"
        errorT={t}
        empty={t('empty')}
        sorting={{ by: query.sort, order: query.order }}
        onSort={(s) => sortBy(s.by as Query['sort'], s.order)}
        {...(canChange ? { selection: { selected, onChange: setSelected, label: (d: Device) => d.name || d.serialNumber } } : {})}
      />
    </section>
  );
}

/** The devices selected in the list, put into a group chosen here. */
function AddToGroupBar(props: { groups: readonly GroupChoice[]; selected: ReadonlySet<string>; onClear: () => void; onAdded: () => void }) {
  const t = useT('devices');
  const [groupUuid, setGroupUuid] = useState('');
  const { busy, message, run } = useAction(t);
  const group = props.groups.find((g) => g.uuid === groupUuid);
  // The group chosen, while it is still one of the account's (the list is read again after each change).
  const add = (chosen: GroupChoice) =>
    void run(async () => {
      const uuids = [...props.selected];
      const { added } = await api.post<{ added: number }>(`/api/inventory/device-groups/${chosen.uuid}/devices`, { deviceUuids: uuids });
      props.onAdded();
      return () => t('selection.added', { count: added, group: chosen.name });
    });
  return (
    <div class="selection-bar" data-testid="selection-bar">
      <span>{t('selection.count', { count: props.selected.size })}</span>
      <label>
        <span class="visually-hidden">{t('selection.group')}</span>
        <select name="addToGroup" value={groupUuid} onChange={(e) => setGroupUuid((e.currentTarget as HTMLSelectElement).value)}>
          <option value="">{props.groups.length === 0 ? t('selection.noGroups') : t('selection.chooseGroup')}</option>
          {props.groups.map((g) => (
            <option key={g.uuid} value={g.uuid}>
              {g.name}
            </option>
          ))}
        </select>
      </label>
      <button type="button" class="primary" data-testid="add-to-group" disabled={busy || props.selected.size === 0 || !group} onClick={() => group && add(group)}>
        {t('selection.add')}
      </button>
      <button type="button" class="secondary" disabled={props.selected.size === 0} onClick={props.onClear}>
        {t('selection.clear')}
      </button>
      <MessageLine message={message} testid="selection-message" />
    </div>
  );
}

interface Draft {
  name: string;
  location: string;
  groupUuid: string;
  model: string;
  firmware: string;
  latitude: string;
  longitude: string;
}

const draftOf = (d: Device): Draft => ({
  name: d.name,
  location: d.location,
  groupUuid: d.groupUuid ?? '',
  model: d.model ?? '',
  firmware: d.firmware ?? '',
  latitude: d.latitude === null ? '' : String(d.latitude),
  longitude: d.longitude === null ? '' : String(d.longitude),
});

function DeviceDetails(props: { uuid: string }) {
  const t = useT('devices');
  const canChange = useSession().user.role !== 'viewer';
  const tf = useT('fleet');
  const [device, setDevice] = useState<Device | null>(null);
  const [events, setEvents] = useState<FleetEvent[]>([]);
  const [jobs, setJobs] = useState<DeviceJob[]>([]);
  const [draft, setDraft] = useState<Draft | null>(null);
  const [error, setError] = useState<unknown>(null);
  const groupList = useLoad(t, allGroups);
  const groups = groupList.data ?? [];
  const [saveState, setSaveState] = useState<{ saving: boolean; saved: boolean; error: unknown }>({ saving: false, saved: false, error: null });

  const load = useCallback(
    async (withDraft: boolean) => {
      try {
        const [d, ev, jb] = await Promise.all([
          api.get<Device>(`/api/inventory/managed-devices/${props.uuid}`),
          api.get<Page<FleetEvent>>(`/api/events?deviceUuid=${props.uuid}&limit=20`),
          api.get<Page<DeviceJob>>(`/api/inventory/managed-devices/${props.uuid}/jobs?limit=20`),
        ]);
        setDevice(d);
        setEvents(ev.items);
        setJobs(jb.items);
        if (withDraft) setDraft(draftOf(d));
        setError(null);
      } catch (err) {
        setError(err);
      }
    },
    [props.uuid],
  );

  useEffect(() => {
    void load(true);
  }, [load]);

  const reload = useThrottle(() => void load(false), LIVE_RELOAD_MS);
  useLiveStream({
    counts: () => reload(),
    events: ({ items, snapshot }) => {
      if (!snapshot && items.some((e) => e.subject === props.uuid)) reload();
    },
  });

  const save = async (e: Event) => {
    e.preventDefault();
    if (!device || !draft) return;
    const body: Record<string, unknown> = {};
    const orig = draftOf(device);
    if (draft.name !== orig.name) body['name'] = draft.name;
    if (draft.location !== orig.location) body['location'] = draft.location;
    if (draft.groupUuid !== orig.groupUuid) body['groupUuid'] = draft.groupUuid === '' ? null : draft.groupUuid;
    if (draft.model !== orig.model) body['model'] = draft.model.trim() === '' ? null : draft.model.trim();
    if (draft.firmware !== orig.firmware) body['firmware'] = draft.firmware.trim() === '' ? null : draft.firmware.trim();
    if (draft.latitude !== orig.latitude || draft.longitude !== orig.longitude) {
      const lat = draft.latitude.trim();
      const lon = draft.longitude.trim();
      body['latitude'] = lat === '' ? null : typedNumber(lat);
      body['longitude'] = lon === '' ? null : typedNumber(lon);
    }
    setSaveState({ saving: true, saved: false, error: null });
    try {
      const updated = await api.patch<Device>(`/api/inventory/managed-devices/${props.uuid}`, body);
      setDevice(updated);
      setDraft(draftOf(updated));
      setSaveState({ saving: false, saved: true, error: null });
    } catch (err) {
      setSaveState({ saving: false, saved: false, error: err });
    }
  };

  const input = (key: Exclude<keyof Draft, 'groupUuid'>) => (
    <label>
      <span>{t(`details.${key}`)}</span>
      <input
        name={key}
        inputMode={key === 'latitude' || key === 'longitude' ? 'decimal' : undefined}
        value={draft?.[key] ?? ''}
        onInput={(e) => {
          if (draft) setDraft({ ...draft, [key]: (e.currentTarget as HTMLInputElement).value });
          setSaveState((s) => ({ ...s, saved: false }));
        }}
      />
    </label>
  );

  if (error && !device) {
    return (
      <section class="page device">
        <p>
          <Link href="/devices">
            {`← ${t('back')}`}
          </Link>
        </p>
        <p class="error" role="alert">
          {errorText(t, error)}
        </p>
      </section>
    );
  }
  if (!device) return <div class="loading" aria-busy="true" />;
  const pos = device.reported.position;
  return (
    <section class="page device">
      <p>
        <Link href="/devices">
          {`← ${t('back')}`}
        </Link>
      </p>
      <header class="page-header">
        <h1 data-testid="device-title">{device.name || device.serialNumber}</h1>
        <StatusBadge status={device.status} />
        <AdmissionBadge admission={device.admission} />
      </header>
      {error ? <p class="error" role="alert">{errorText(t, error)}</p> : null}
      <div class="detail-grid">
        <section class="panel">
          <h2>{t('details.overview')}</h2>
          <dl class="facts">
            <dt>{t('details.serialNumber')}</dt>
            <dd class="mono">{device.serialNumber}</dd>
            <dt>{t('details.status')}</dt>
            <dd data-testid="device-status">{tf(`status.${device.status}`)}</dd>
            <dt>{t('details.admission')}</dt>
            <dd>{tf(`admission.${device.admission ?? 'none'}`)}</dd>
            {device.admissionReason ? (
              <>
                <dt>{t('details.admissionReason')}</dt>
                <dd class="mono">{device.admissionReason}</dd>
              </>
            ) : null}
            <dt>{t('details.connectedAt')}</dt>
            <dd>{device.status === 'offline' ? '–' : formatDateTime(device.connectedAt)}</dd>
            <dt>{t('details.lastSeenAt')}</dt>
            <dd>{device.lastSeenAt ? formatDateTime(device.lastSeenAt) : t('never')}</dd>
            <dt>{t('details.createdAt')}</dt>
            <dd>{formatDateTime(device.createdAt)}</dd>
            <dt>{t('details.reportedModel')}</dt>
            <dd>{device.reported.model ?? '–'}</dd>
            <dt>{t('details.reportedFirmware')}</dt>
            <dd>{device.reported.firmware ?? '–'}</dd>
            <dt>{t('details.reportedPosition')}</dt>
            <dd>{pos ? `${pos.latitude.toFixed(4)}, ${pos.longitude.toFixed(4)}` : '–'}</dd>
          </dl>
        </section>
        <section class="panel">
          <h2>{t('details.metadata')}</h2>
          <form class="stacked" onSubmit={(e) => void save(e)} data-testid="metadata-form">
            {input('name')}
            {input('location')}
            <label>
              <span>{t('details.group')}</span>
              <select
                name="groupUuid"
                value={draft?.groupUuid ?? ''}
                onChange={(e) => {
                  if (draft) setDraft({ ...draft, groupUuid: (e.currentTarget as HTMLSelectElement).value });
                  setSaveState((s) => ({ ...s, saved: false }));
                }}
              >
                <option value="">{t('details.noGroup')}</option>
                {groups.map((g) => (
                  <option key={g.uuid} value={g.uuid}>
                    {g.name}
                  </option>
                ))}
              </select>
            </label>
            <LoadError text={groupList.error} />
            {input('model')}
            {input('firmware')}
            {input('latitude')}
            {input('longitude')}
            <div class="form-actions">
              <button type="submit" class="primary" disabled={saveState.saving || !canChange}>
                {t('details.save')}
              </button>
              {saveState.saved ? (
                <span class="success" role="status">
                  {t('details.saved')}
                </span>
              ) : null}
              {saveState.error ? (
                <span class="error" role="alert">
                  {errorText(t, saveState.error, deviceFieldNames(t))}
                </span>
              ) : null}
            </div>
          </form>
        </section>
        <CustomFieldsPanel device={device} canChange={canChange} onSaved={setDevice} />
        <KeepAlivePanel device={device} canChange={canChange} onSaved={setDevice} />
        {canChange ? (
          <section class="panel wide">
            <h2>{t('details.profile')}</h2>
            <p class="muted">{t('details.profileText')}</p>
            <p class="form-actions">
              <a class="secondary" href={`/api/inventory/managed-devices/${props.uuid}/connection-profile`} download data-testid="profile-download">
                {t('details.profilePacket')}
              </a>
              <a class="secondary" href={`/api/inventory/managed-devices/${props.uuid}/connection-profile?format=json`} download={`connection-profile-${device.serialNumber}.json`}>
                {t('details.profileJson')}
              </a>
            </p>
          </section>
        ) : null}
        <section class="panel wide">
          <h2>{t('details.events')}</h2>
          <EventList events={events} showDevice={false} testId="device-events" />
        </section>
        <section class="panel wide">
          <h2>{t('details.jobs')}</h2>
          {jobs.length === 0 ? (
            <p class="muted">{t('details.noJobs')}</p>
          ) : (
            <table data-testid="device-jobs">
              <thead>
                <tr>
                  <th>{t('details.job')}</th>
                  <th>{t('details.jobState')}</th>
                  <th>{t('details.result')}</th>
                  <th>{t('details.state')}</th>
                  <th>{t('details.attempts')}</th>
                  <th>{t('details.updatedAt')}</th>
                </tr>
              </thead>
              <tbody>
                {jobs.map((j) => (
                  <tr key={j.jobUuid}>
                    <td>
                      <Link href={`/jobs/${j.jobUuid}`}>{j.jobName || j.jobUuid.slice(0, 8)}</Link>
                    </td>
                    <td>{tf(`jobState.${j.jobState}`, { defaultValue: j.jobState })}</td>
                    <td>
                      {j.result
                        ? tf(`execution.${j.result.replace('-', '_')}`, { defaultValue: j.result })
                        : tf(`jobDeviceStatus.${j.status}`, { defaultValue: j.status })}
                    </td>
                    <td>
                      {j.state ? tf(`execution.${j.state.replace('-', '_')}`, { defaultValue: j.state }) : '–'}
                      {j.errorCode ? (
                        <span class="mono">
                          {' '}
                          (
                          {j.errorCode}
                          )
                        </span>
                      ) : null}
                    </td>
                    <td>{j.attempts}</td>
                    <td>{formatDateTime(j.updatedAt ?? j.jobCreatedAt)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      </div>
    </section>
  );
}

export default function DevicesPage(props: PageProps) {
  const rest = props.path.replace(/^\/devices\/?/, '');
  if (rest !== '') return <DeviceDetails key={rest} uuid={decodeURIComponent(rest.split('/')[0]!)} />;
  return <DeviceList />;
}
