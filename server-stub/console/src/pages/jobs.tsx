/**
 * Update jobs: the list (`/jobs`: state, target, progress; paged by the server), the form that
 * creates a job (`/jobs/new`) and one job's page (`/jobs/<uuid>`: live progress, device results,
 * pause, resume, cancel). The list is read again when the fleet's stream reports a job event (a
 * job started, finished, was cancelled or aborted, or a device reported a job result).
 */
import { useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { type Job, JobStateBadge, ProgressBar, targetText } from '../components/job-parts.js';
import { Link } from '../components/link.js';
import { type Column, type Page, PagedTable, usePagedList, useThrottle } from '../components/paged-table.js';
import { formatDateTime, useT } from '../i18n.js';
import { type FleetEvent, useLiveStream } from '../live.js';
import type { PageProps } from '../router.js';
import { useSession } from '../session.js';
import JobDetail from './job-detail.js';
import JobNew from './job-new.js';
import '../styles/fleet.css';
import '../styles/jobs.css';

const PAGE_SIZE = 25;
/** Job events read the list again at most this often (ms). */
const LIVE_RELOAD_MS = 2_000;
const STATES = ['running', 'paused', 'finished', 'cancelled', 'aborted'] as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Does this event change what the job list shows? */
function isJobEvent(e: FleetEvent): boolean {
  return e.type.startsWith('job.') || (e.source === 'device' && e.kind.startsWith('job_'));
}

function JobList() {
  const t = useT('jobs');
  const { user } = useSession();
  const [state, setState] = useState<'' | (typeof STATES)[number]>('');
  const list = usePagedList(
    (cursor) => {
      const p = new URLSearchParams({ limit: String(PAGE_SIZE) });
      if (state) p.set('state', state);
      if (cursor) p.set('cursor', cursor);
      return api.get<Page<Job>>(`/api/jobs?${p.toString()}`);
    },
    { state },
  );

  const reload = useThrottle(() => void list.reload(), LIVE_RELOAD_MS);
  const first = useRef(true);
  useLiveStream({
    hello: () => (first.current ? (first.current = false) : reload()),
    events: ({ items, snapshot }) => {
      if (!snapshot && items.some(isJobEvent)) reload();
    },
  });

  const columns: Column<Job>[] = [
    {
      id: 'name',
      header: t('columns.name'),
      cell: (j) => (
        <>
          <Link href={`/jobs/${j.uuid}`} class="job-name">
            {j.name}
          </Link>
          {j.system ? <span class="badge">{t('list.system')}</span> : null}
        </>
      ),
    },
    { id: 'state', header: t('columns.state'), cell: (j) => <JobStateBadge state={j.state} /> },
    { id: 'target', header: t('columns.target'), cell: (j) => targetText(t, j.target) },
    {
      id: 'progress',
      header: t('columns.progress'),
      cell: (j) => (
        <>
          <ProgressBar percent={j.progress.percentComplete} label={t('columns.progress')} />
          <div class="muted small">{t('list.doneOf', { done: j.progress.devices.done, total: j.progress.devices.total })}</div>
        </>
      ),
    },
    { id: 'succeeded', header: t('columns.succeeded'), cell: (j) => j.progress.results['succeeded'] ?? 0 },
    {
      id: 'failed',
      header: t('columns.failed'),
      cell: (j) => {
        const failed = (j.progress.results['failed'] ?? 0) + (j.progress.results['rejected'] ?? 0) + (j.progress.results['timed-out'] ?? 0);
        return <span class={failed > 0 ? 'error' : undefined}>{failed}</span>;
      },
    },
    { id: 'created', header: t('columns.created'), class: 'nowrap', cell: (j) => formatDateTime(j.createdAt) },
  ];

  const canCreate = user.role !== 'viewer';
  return (
    <section class="page jobs">
      <header class="page-header">
        <h1>{t('title')}</h1>
        {canCreate ? (
          <Link href="/jobs/new" class="primary button-link">
            {t('list.create')}
          </Link>
        ) : null}
      </header>
      <div class="filters">
        <label>
          <span>{t('list.state')}</span>
          <select name="state" value={state} onChange={(e) => setState((e.currentTarget as HTMLSelectElement).value as typeof state)}>
            <option value="">{t('list.anyState')}</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {t(`fleet:jobState.${s}`)}
              </option>
            ))}
          </select>
        </label>
      </div>
      <PagedTable
        list={list}
        columns={columns}
        rowKey={(j) => j.uuid}
        rowAttrs={(j) => ({ 'data-job': j.uuid, 'data-state': j.state })}
        testId="job-table"
        errorT={t}
        empty={state ? t('list.noneInState') : t('list.empty')}
      />
    </section>
  );
}

function NotAJob() {
  const t = useT('jobs');
  return (
    <section class="page">
      <h1>{t('detail.notFound')}</h1>
      <Link href="/jobs">{t('detail.back')}</Link>
    </section>
  );
}

export default function JobsPage(props: PageProps) {
  const sub = props.path.replace(/^\/jobs\/?/, '').replace(/\/$/, '');
  if (sub === '') return <JobList />;
  if (sub === 'new') return <JobNew />;
  if (UUID.test(sub)) return <JobDetail key={sub} uuid={sub.toLowerCase()} />;
  return <NotAJob />;
}
