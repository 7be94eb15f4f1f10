/**
 * Update jobs: the list (`/jobs`: state, target, progress; paged by the server), the form that
 * creates a job (`/jobs/new`) and one job's page (`/jobs/<uuid>`: live progress, device results,
 * pause, resume, cancel). The list is read again when the fleet's stream reports a job event (a
 * job started, finished, was cancelled or aborted, or a device reported a job result).
 */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api.js';
import { errorText } from '../components/error-text.js';
import { type Job, JobStateBadge, type Page, ProgressBar, targetText } from '../components/job-parts.js';
import { Link } from '../components/link.js';
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
  const [cursors, setCursors] = useState<Array<string | undefined>>([undefined]);
  const [page, setPage] = useState<Page<Job> | null>(null);
  const [error, setError] = useState<unknown>(null);
  const pageIndex = cursors.length - 1;
  const generation = useRef(0);

  const load = useCallback(async () => {
    const mine = ++generation.current;
    const p = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (state) p.set('state', state);
    const cursor = cursors[pageIndex];
    if (cursor) p.set('cursor', cursor);
    try {
      const result = await api.get<Page<Job>>(`/api/jobs?${p.toString()}`);
      if (mine !== generation.current) return;
      setPage(result);
      setError(null);
    } catch (err) {
      if (mine !== generation.current) return;
      if (err instanceof ApiError && err.code === 'SERVER_INVALID_CURSOR') setCursors([undefined]);
      setError(err);
    }
  }, [state, cursors, pageIndex]);

  useEffect(() => {
    void load();
  }, [load]);

  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => () => clearTimeout(timer.current), []);
  const reload = () => {
    timer.current ??= setTimeout(() => {
      timer.current = undefined;
      void loadRef.current();
    }, LIVE_RELOAD_MS);
  };
  const first = useRef(true);
  useLiveStream({
    hello: () => (first.current ? (first.current = false) : reload()),
    events: ({ items, snapshot }) => {
      if (!snapshot && items.some(isJobEvent)) reload();
    },
  });

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
          <select
            name="state"
            value={state}
            onChange={(e) => {
              setState((e.currentTarget as HTMLSelectElement).value as typeof state);
              setCursors([undefined]);
            }}
          >
            <option value="">{t('list.anyState')}</option>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {t(`fleet:jobState.${s}`)}
              </option>
            ))}
          </select>
        </label>
      </div>
      {error ? (
        <p class="error" role="alert">
          {errorText(t, error)}
        </p>
      ) : null}
      {page === null ? (
        <p class="muted" aria-busy="true">
          {t('common:loading')}
        </p>
      ) : page.items.length === 0 ? (
        <p class="notice">{state ? t('list.noneInState') : t('list.empty')}</p>
      ) : (
        <div class="table-wrap">
          <table class="data" data-testid="job-table">
            <thead>
              <tr>
                <th>{t('columns.name')}</th>
                <th>{t('columns.state')}</th>
                <th>{t('columns.target')}</th>
                <th>{t('columns.progress')}</th>
                <th>{t('columns.succeeded')}</th>
                <th>{t('columns.failed')}</th>
                <th>{t('columns.created')}</th>
              </tr>
            </thead>
            <tbody>
              {page.items.map((j) => {
                const failed = (j.progress.results['failed'] ?? 0) + (j.progress.results['rejected'] ?? 0) + (j.progress.results['timed-out'] ?? 0);
                return (
                  <tr key={j.uuid} data-job={j.uuid} data-state={j.state}>
                    <td>
                      <Link href={`/jobs/${j.uuid}`} class="job-name">
                        {j.name}
                      </Link>
                      {j.system ? <span class="badge">{t('list.system')}</span> : null}
                    </td>
                    <td>
                      <JobStateBadge state={j.state} />
                    </td>
                    <td>{targetText(t, j.target)}</td>
                    <td>
                      <ProgressBar percent={j.progress.percentComplete} label={t('columns.progress')} />
                      <div class="muted small">{t('list.doneOf', { done: j.progress.devices.done, total: j.progress.devices.total })}</div>
                    </td>
                    <td>{j.progress.results['succeeded'] ?? 0}</td>
                    <td class={failed > 0 ? 'error' : undefined}>{failed}</td>
                    <td class="nowrap">{formatDateTime(j.createdAt)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <nav class="paging">
        <button type="button" class="secondary" disabled={pageIndex === 0} onClick={() => setCursors(cursors.slice(0, -1))}>
          {t('paging.previous')}
        </button>
        <span>{t('paging.page', { page: pageIndex + 1 })}</span>
        <button
          type="button"
          class="secondary"
          disabled={!page?.nextCursor}
          onClick={() => page?.nextCursor && setCursors([...cursors, page.nextCursor])}
        >
          {t('paging.next')}
        </button>
      </nav>
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
