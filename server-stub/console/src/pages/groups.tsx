/**
 * Device groups (`/devices/groups`): the list and a form that creates one; a group's page
 * (`/devices/groups/<uuid>`): rename and describe it, delete it (after a confirmation; its devices
 * stay registered, without a group), its members (paged by the server) with removal, devices picked
 * from a search to add (a device is in at most one group: adding moves it), and a link that starts
 * an update job for the group.
 */
import type { TFunction } from 'i18next';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { allGroups, DevicesHeader, type Group } from '../components/device-groups.js';
import type { FieldNames } from '../components/error-text.js';
import { Link } from '../components/link.js';
import { LoadError, MessageLine, SubmitRow, useAction, useCan, useLoad } from '../components/page-kit.js';
import { type Column, type Page, PagedTable, usePagedList } from '../components/paged-table.js';
import { formatDateTime, useT } from '../i18n.js';
import { navigate, type PageProps } from '../router.js';
import '../styles/fleet.css';

const PAGE_SIZE = 25;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

interface Member {
  uuid: string;
  serialNumber: string;
  name: string;
  groupUuid: string | null;
  status: 'online' | 'unmanaged' | 'offline';
}

function groupFieldNames(t: TFunction): FieldNames {
  return { label: (field) => (field === '/name' || field === '/description' ? t(`fields.${field.slice(1)}`) : undefined) };
}

/** Name and description of a group: empty for a new one, the group's for a change. */
function GroupForm(props: {
  initial?: Group;
  submitLabel: string;
  testId: string;
  onSubmit: (body: { name: string; description: string }) => Promise<() => string>;
}) {
  const t = useT('groups');
  const [name, setName] = useState(props.initial?.name ?? '');
  const [description, setDescription] = useState(props.initial?.description ?? '');
  const { busy, message, run } = useAction(t, undefined, groupFieldNames(t));
  const submit = (e: Event) => {
    e.preventDefault();
    void run(async () => {
      const done = await props.onSubmit({ name: name.trim(), description });
      if (!props.initial) {
        setName('');
        setDescription('');
      }
      return done;
    });
  };
  return (
    <form class="stacked" data-testid={props.testId} onSubmit={submit} noValidate>
      <label>
        <span>{t('fields.name')}</span>
        <input name="name" value={name} maxLength={100} onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)} />
      </label>
      <label>
        <span>{t('fields.description')}</span>
        <textarea name="description" rows={2} maxLength={1000} value={description} onInput={(e) => setDescription((e.currentTarget as HTMLTextAreaElement).value)} />
      </label>
      <SubmitRow busy={busy} label={props.submitLabel} />
      <MessageLine message={message} testid={`${props.testId}-message`} />
    </form>
  );
}

function GroupList() {
  const t = useT('groups');
  const canChange = useCan('operator');
  const list = usePagedList((cursor) => api.get<Page<Group>>(`/api/inventory/device-groups?limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`));
  const columns: Column<Group>[] = [
    {
      id: 'name',
      header: t('fields.name'),
      cell: (g) => (
        <Link href={`/devices/groups/${g.uuid}`} class="group-name">
          {g.name}
        </Link>
      ),
    },
    { id: 'description', header: t('fields.description'), cell: (g) => g.description },
    { id: 'devices', header: t('fields.devices'), cell: (g) => g.deviceCount },
    { id: 'created', header: t('fields.created'), class: 'nowrap', cell: (g) => formatDateTime(g.createdAt) },
  ];
  return (
    <section class="page groups">
      <DevicesHeader title={t('title')} current="groups" />
      <p class="muted">{t('intro')}</p>
      {canChange ? (
        <section class="panel">
          <h2>{t('create.title')}</h2>
          <GroupForm
            submitLabel={t('create.submit')}
            testId="group-create"
            onSubmit={async (body) => {
              const g = await api.post<Group>('/api/inventory/device-groups', body);
              await list.reload();
              return () => t('create.done', { name: g.name });
            }}
          />
        </section>
      ) : null}
      <PagedTable
        list={list}
        columns={columns}
        rowKey={(g) => g.uuid}
        rowAttrs={(g) => ({ 'data-group': g.uuid })}
        testId="group-table"
        errorT={t}
        empty={t('empty')}
      />
    </section>
  );
}

function GroupDetail(props: { uuid: string }) {
  const t = useT('groups');
  const tf = useT('fleet');
  const canChange = useCan('operator');
  const group = useLoad(t, () => api.get<Group>(`/api/inventory/device-groups/${props.uuid}`), [props.uuid]);
  const [confirming, setConfirming] = useState(false);
  // The confirmation takes the focus (keyboard and screen reader users are in it), on its safe choice.
  const cancelDelete = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (confirming) cancelDelete.current?.focus();
  }, [confirming]);
  const removal = useAction(t);
  const deletion = useAction(t);
  const members = usePagedList(
    (cursor) => api.get<Page<Member>>(`/api/inventory/device-groups/${props.uuid}/devices?limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`),
    props.uuid,
  );
  const changed = async () => {
    await Promise.all([group.reload(), members.reload()]);
  };

  const g = group.data;
  if (!g) {
    return (
      <section class="page groups">
        <p>
          <Link href="/devices/groups">{`← ${t('back')}`}</Link>
        </p>
        {group.error ? <LoadError text={group.error} /> : <div class="loading" aria-busy="true" />}
      </section>
    );
  }

  const remove = (m: Member) =>
    void removal.run(async () => {
      await api.del(`/api/inventory/device-groups/${props.uuid}/devices/${m.uuid}`);
      await changed();
      return () => t('members.removed', { name: m.name || m.serialNumber });
    });
  const columns: Column<Member>[] = [
    {
      id: 'name',
      header: t('members.name'),
      cell: (m) => (
        <Link href={`/devices/${m.uuid}`} class="device-name">
          {m.name || m.serialNumber}
        </Link>
      ),
    },
    { id: 'serialNumber', header: t('members.serialNumber'), class: 'mono', cell: (m) => m.serialNumber },
    { id: 'status', header: t('members.status'), cell: (m) => <span class={`badge status-${m.status}`}>{tf(`status.${m.status}`)}</span> },
  ];
  if (canChange) {
    columns.push({
      id: 'remove',
      header: <span class="visually-hidden">{t('members.actions')}</span>,
      cell: (m) => (
        <button type="button" class="secondary" data-testid="member-remove" disabled={removal.busy} onClick={() => remove(m)}>
          {t('members.remove')}
        </button>
      ),
    });
  }

  return (
    <section class="page groups">
      <p>
        <Link href="/devices/groups">{`← ${t('back')}`}</Link>
      </p>
      <header class="page-header">
        <h1 data-testid="group-title">{g.name}</h1>
        <span class="badge" data-testid="group-count">
          {t('deviceCount', { count: g.deviceCount })}
        </span>
        {canChange ? (
          <Link href={`/jobs/new?groupUuid=${g.uuid}`} class="primary button-link">
            {t('createJob')}
          </Link>
        ) : null}
      </header>
      {g.description ? <p class="group-description">{g.description}</p> : null}
      {group.error ? <LoadError text={group.error} /> : null}
      <div class="detail-grid">
        {canChange ? (
          <section class="panel">
            <h2>{t('edit.title')}</h2>
            <GroupForm
              initial={g}
              submitLabel={t('edit.submit')}
              testId="group-edit"
              onSubmit={async (body) => {
                await api.patch<Group>(`/api/inventory/device-groups/${g.uuid}`, body);
                await group.reload();
                return () => t('edit.done');
              }}
            />
          </section>
        ) : null}
        {canChange ? (
          <section class="panel">
            <h2>{t('delete.title')}</h2>
            <p class="muted">{t('delete.text')}</p>
            {confirming ? (
              <div class="confirm" role="alertdialog" aria-label={t('delete.title')} data-testid="group-delete-confirm">
                <p>{t('delete.question', { name: g.name, count: g.deviceCount })}</p>
                <div class="form-actions">
                  <button
                    type="button"
                    class="danger"
                    data-testid="group-delete-yes"
                    disabled={deletion.busy}
                    onClick={() =>
                      void deletion
                        .run(async () => {
                          await api.del(`/api/inventory/device-groups/${g.uuid}`);
                          return () => t('delete.done');
                        })
                        .then((ok) => ok && navigate('/devices/groups'))}
                  >
                    {t('delete.confirm')}
                  </button>
                  <button type="button" class="secondary" ref={cancelDelete} onClick={() => setConfirming(false)}>
                    {t('common:actions.cancel')}
                  </button>
                </div>
              </div>
            ) : (
              <button type="button" class="secondary" data-testid="group-delete" onClick={() => setConfirming(true)}>
                {t('delete.submit')}
              </button>
            )}
            <MessageLine message={deletion.message} testid="group-delete-message" />
          </section>
        ) : null}
        <section class="panel wide" data-testid="members">
          <h2>{t('members.title')}</h2>
          <MessageLine message={removal.message} testid="members-message" />
          <PagedTable
            list={members}
            columns={columns}
            rowKey={(m) => m.uuid}
            rowAttrs={(m) => ({ 'data-serial': m.serialNumber })}
            testId="member-table"
            errorT={t}
            empty={t('members.empty')}
          />
        </section>
        {canChange ? <AddDevices group={g} onAdded={changed} /> : null}
      </div>
    </section>
  );
}

/** Devices found by a search (server-side, paged), picked with checkboxes and added to the group. */
function AddDevices(props: { group: Group; onAdded: () => Promise<void> }) {
  const t = useT('groups');
  const [draft, setDraft] = useState('');
  const [text, setText] = useState('');
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const names = useLoad(t, async () => new Map((await allGroups()).map((g) => [g.uuid, g.name])));
  const { busy, message, run } = useAction(t);
  const found = usePagedList((cursor) => {
    const p = new URLSearchParams({ limit: String(PAGE_SIZE), sort: 'name' });
    if (text) p.set('text', text);
    if (cursor) p.set('cursor', cursor);
    return api.get<Page<Member>>(`/api/inventory/managed-devices?${p.toString()}`);
  }, text);
  const add = () =>
    void run(async () => {
      const { added } = await api.post<{ added: number }>(`/api/inventory/device-groups/${props.group.uuid}/devices`, { deviceUuids: [...selected] });
      setSelected(new Set());
      await Promise.all([props.onAdded(), found.reload(), names.reload()]);
      return () => t('add.done', { count: added });
    });
  const columns: Column<Member>[] = [
    { id: 'name', header: t('members.name'), cell: (m) => m.name || m.serialNumber },
    { id: 'serialNumber', header: t('members.serialNumber'), class: 'mono', cell: (m) => m.serialNumber },
    {
      id: 'group',
      header: t('add.currentGroup'),
      cell: (m) =>
        m.groupUuid === null ? '–' : m.groupUuid === props.group.uuid ? t('add.thisGroup') : (names.data?.get(m.groupUuid) ?? ''),
    },
  ];
  return (
    <section class="panel wide" data-testid="add-devices">
      <h2>{t('add.title')}</h2>
      <p class="muted">{t('add.text')}</p>
      {/* Without the names, the picker cannot say which group a device is in. */}
      <LoadError text={names.error} />
      <form
        class="form-row"
        onSubmit={(e) => {
          e.preventDefault();
          setText(draft.trim());
        }}
      >
        <label>
          <span>{t('add.search')}</span>
          <input name="deviceSearch" value={draft} placeholder={t('add.searchPlaceholder')} onInput={(e) => setDraft((e.currentTarget as HTMLInputElement).value)} />
        </label>
        <button type="submit" class="secondary">
          {t('add.find')}
        </button>
      </form>
      <PagedTable
        list={found}
        columns={columns}
        rowKey={(m) => m.uuid}
        rowAttrs={(m) => ({ 'data-serial': m.serialNumber })}
        testId="device-picker"
        errorT={t}
        empty={t('add.none')}
        selection={{ selected, onChange: setSelected, label: (m) => m.name || m.serialNumber }}
      />
      <div class="form-actions">
        <button type="button" class="primary" data-testid="add-selected" disabled={busy || selected.size === 0} onClick={add}>
          {t('add.submit', { count: selected.size })}
        </button>
      </div>
      <MessageLine message={message} testid="add-message" />
    </section>
  );
}

export default function GroupsPage(props: PageProps) {
  const t = useT('groups');
  const sub = props.path.replace(/^\/devices\/groups\/?/, '').replace(/\/$/, '');
  if (sub === '') return <GroupList />;
  if (UUID.test(sub)) return <GroupDetail key={sub} uuid={sub.toLowerCase()} />;
  return (
    <section class="page">
      <h1>{t('notFound')}</h1>
      <Link href="/devices/groups">{t('back')}</Link>
    </section>
  );
}
