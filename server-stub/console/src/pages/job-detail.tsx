/**
 * One update job (`/jobs/<uuid>`): state, progress and counts, the options it runs with, and the
 * per-device results with error codes (paged by the server). Progress and the rows of the shown
 * page follow the server's stream (`?job=<uuid>`: the job's counts when they change and the
 * device rows whose execution changed), so the page never polls the whole job. Pause, resume and
 * cancel are offered as the job's state allows.
 */
import type { TFunction } from 'i18next';
import { Fragment } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api.js';
import { errorText } from '../components/error-text.js';
import {
  executionKey,
  type Job,
  JOB_ACTIONS,
  type JobDeviceRow,
  type JobLiveMessage,
  JobStateBadge,
  type Page,
  ProgressBar,
  RESULTS,
  sourceText,
  targetText,
} from '../components/job-parts.js';
import { Link } from '../components/link.js';
import { Pager } from '../components/paged-table.js';
import { currentLanguage, formatDateTime, useT } from '../i18n.js';
import { useLiveStream } from '../live.js';
import { useSession } from '../session.js';

const PAGE_SIZE = 25;

type Action = 'pause' | 'resume' | 'cancel';
/** What the last action did, in the language of that moment (left out after a switch). */
type Message = { kind: 'success' | 'error'; text: string; language: string } | null;

function Count(props: { id: string; value: number; label: string; tone?: string }) {
  const number = new Intl.NumberFormat(document.documentElement.lang || 'en');
  return (
    <div class={`tile job-tile${props.tone ? ` tone-${props.tone}` : ''}`}>
      <span class="tile-value" data-testid={`job-count-${props.id}`}>
        {number.format(props.value)}
      </span>
      <span class="tile-label">{props.label}</span>
    </div>
  );
}

function windowText(t: TFunction, w: NonNullable<Job['options']['window']>): string {
  if ('start' in w) return t('options.windowOnce', { start: formatDateTime(w.start), end: formatDateTime(w.end) });
  const days = w.days.map((d) => t(`days.${d}`)).join(', ');
  return t('options.windowWeekly', { days, start: w.startTime, end: w.endTime });
}

/** The job's options as label/value pairs (only those that differ from "no limit"). */
function optionFacts(t: TFunction, o: Job['options']): Array<[string, string]> {
  const facts: Array<[string, string]> = [];
  facts.push([t('options.maxConcurrent'), o.maxConcurrent === null ? t('options.unlimited') : String(o.maxConcurrent)]);
  facts.push([t('options.maxPerMinute'), o.maxPerMinute === null ? t('options.unlimited') : String(o.maxPerMinute)]);
  if (o.waves.length > 0) facts.push([t('options.waves'), o.waves.map((w) => `${w} %`).join(' → ')]);
  facts.push([t('options.timeout'), t('options.seconds', { count: o.timeoutSec })]);
  facts.push([t('options.rebootTimeout'), t('options.seconds', { count: o.rebootTimeoutSec })]);
  facts.push([
    t('options.retries'),
    o.retries === 0 ? t('options.noRetries') : t('options.retriesValue', { count: o.retries, delay: o.retryDelaySec }),
  ]);
  if (o.abort) facts.push([t('options.abort'), t('options.abortValue', { percent: o.abort.failurePercent, count: o.abort.minFailures })]);
  if (o.window) facts.push([t('options.window'), windowText(t, o.window)]);
  facts.push([t('options.allowDowngrade'), o.allowDowngrade ? t('options.yes') : t('options.no')]);
  facts.push([t('options.dynamic'), o.dynamic ? t('options.yes') : t('options.no')]);
  return facts;
}

function DeviceResults(props: { rows: JobDeviceRow[] }) {
  const t = useT('jobs');
  return (
    <div class="table-wrap">
      <table class="data" data-testid="job-devices">
        <thead>
          <tr>
            <th>{t('devices.device')}</th>
            <th>{t('devices.status')}</th>
            <th>{t('devices.execution')}</th>
            <th>{t('devices.attempts')}</th>
            <th>{t('devices.error')}</th>
            <th>{t('devices.updated')}</th>
          </tr>
        </thead>
        <tbody>
          {props.rows.map((r) => {
            const state = r.result ?? r.state;
            return (
              <tr key={r.deviceUuid} data-device={r.deviceUuid} data-status={r.status} data-result={r.result ?? ''}>
                <td>
                  <Link href={`/devices/${r.deviceUuid}`} class="device-name">
                    {r.name || r.serialNumber}
                  </Link>
                  {r.name ? <div class="muted small mono">{r.serialNumber}</div> : null}
                </td>
                <td>
                  <span class={`badge job-device-${r.status}`}>{t(`fleet:jobDeviceStatus.${r.status}`)}</span>
                </td>
                <td>
                  {state ? (
                    <span class={`badge execution-${state}`} data-testid="execution-state">
                      {t(executionKey(state), { defaultValue: state })}
                    </span>
                  ) : (
                    <span class="muted">–</span>
                  )}
                  {r.result === null && r.percent !== null && r.state === 'downloading' ? <span class="muted small">{` ${r.percent} %`}</span> : null}
                  {r.cancelRequested && r.result === null ? <div class="muted small">{t('devices.cancelRequested')}</div> : null}
                </td>
                <td>{r.attempts}</td>
                <td>
                  {r.errorCode ? (
                    <>
                      <code class="error-code" data-testid="error-code">
                        {r.errorCode}
                      </code>
                      <div class="small" title={r.errorMessage ?? undefined}>
                        {t(`deviceErrors.${r.errorCode}`, { defaultValue: r.errorMessage ?? '' })}
                      </div>
                    </>
                  ) : null}
                </td>
                <td class="nowrap">{formatDateTime(r.updatedAt)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export default function JobDetail(props: { uuid: string }) {
  const t = useT('jobs');
  const { user } = useSession();
  const [job, setJob] = useState<Job | null>(null);
  const [packetName, setPacketName] = useState<string | undefined>(undefined);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [cursors, setCursors] = useState<Array<string | undefined>>([undefined]);
  const [rows, setRows] = useState<Page<JobDeviceRow> | null>(null);
  const [rowsError, setRowsError] = useState<unknown>(null);
  const [live, setLive] = useState(false);
  const [busy, setBusy] = useState(false);
  const [confirmCancel, setConfirmCancel] = useState(false);
  const [message, setMessage] = useState<Message>(null);
  const pageIndex = cursors.length - 1;
  const generation = useRef(0);
  /** The job's state as last seen (loaded, answered by an action, or streamed). */
  const stateRef = useRef<Job['state'] | null>(null);
  /**
   * Rows the stream sent while a page was being read: the read may have been answered before
   * those changes, and the stream sends a change only once, so they are laid over its answer.
   */
  const streamedDuringLoad = useRef<Map<string, JobDeviceRow> | null>(null);

  const loadJob = useCallback(async () => {
    try {
      const j = await api.get<Job>(`/api/jobs/${props.uuid}`);
      stateRef.current = j.state;
      setJob(j);
      setLoadError(null);
      if (j.packetUuid !== null) {
        api
          .get<{ name: string }>(`/api/packets/${j.packetUuid}`)
          .then((p) => setPacketName(p.name))
          .catch(() => undefined);
      }
    } catch (err) {
      setLoadError(err);
    }
  }, [props.uuid]);

  const loadRows = useCallback(async () => {
    const mine = ++generation.current;
    const p = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const cursor = cursors[pageIndex];
    if (cursor) p.set('cursor', cursor);
    const streamed = new Map<string, JobDeviceRow>();
    streamedDuringLoad.current = streamed;
    try {
      const page = await api.get<Page<JobDeviceRow>>(`/api/jobs/${props.uuid}/devices?${p.toString()}`);
      if (mine !== generation.current) return;
      streamedDuringLoad.current = null;
      const newer = (r: JobDeviceRow) => {
        const s = streamed.get(r.deviceUuid);
        return s && (s.updatedAt ?? '') >= (r.updatedAt ?? '') ? s : r;
      };
      setRows({ ...page, items: page.items.map(newer) });
      setRowsError(null);
    } catch (err) {
      if (mine !== generation.current) return;
      streamedDuringLoad.current = null;
      if (err instanceof ApiError && err.code === 'SERVER_INVALID_CURSOR') setCursors([undefined]);
      setRowsError(err);
    }
  }, [props.uuid, cursors, pageIndex]);

  useEffect(() => {
    void loadJob();
  }, [loadJob]);
  useEffect(() => {
    void loadRows();
  }, [loadRows]);

  const first = useRef(true);
  useLiveStream(
    {
      hello: () => {
        setLive(true);
        // A reconnect: changes may have been missed meanwhile.
        if (first.current) first.current = false;
        else {
          void loadJob();
          void loadRows();
        }
      },
      job: (data) => {
        const m = data as JobLiveMessage | null;
        if (!m) return;
        // A cancelled job settles its waiting devices at once, without executions (which is what
        // the stream's device rows follow): the shown page is read again when the state changes.
        if (stateRef.current !== null && m.state !== stateRef.current) {
          void loadRows();
          // What the last action said is history now.
          setMessage(null);
        }
        stateRef.current = m.state;
        setJob((prev) => (prev ? { ...prev, state: m.state, finishedAt: m.finishedAt, abortReason: m.abortReason, progress: m.progress } : prev));
      },
      devices: (data) => {
        const changed = new Map((data.items as JobDeviceRow[]).map((r) => [r.deviceUuid, r]));
        const pending = streamedDuringLoad.current;
        if (pending) for (const [k, r] of changed) pending.set(k, r);
        setRows((prev) => (prev ? { ...prev, items: prev.items.map((r) => changed.get(r.deviceUuid) ?? r) } : prev));
      },
    },
    props.uuid,
  );

  const act = async (action: Action) => {
    setBusy(true);
    setMessage(null);
    setConfirmCancel(false);
    try {
      const j = await api.post<Job>(`/api/jobs/${props.uuid}/${action}`);
      stateRef.current = j.state;
      setJob(j);
      setMessage({ kind: 'success', text: t(`actions.${action}Done`), language: currentLanguage() });
      void loadRows();
    } catch (err) {
      setMessage({ kind: 'error', text: errorText(t, err), language: currentLanguage() });
      await loadJob();
    } finally {
      setBusy(false);
    }
  };

  if (loadError) {
    const gone = loadError instanceof ApiError && loadError.status === 404;
    return (
      <section class="page">
        <h1>{gone ? t('detail.notFound') : t('title')}</h1>
        {gone ? null : (
          <p class="error" role="alert">
            {errorText(t, loadError)}
          </p>
        )}
        <Link href="/jobs">{t('detail.back')}</Link>
      </section>
    );
  }
  if (!job) {
    return (
      <section class="page" aria-busy="true">
        <h1>{t('title')}</h1>
      </section>
    );
  }

  const p = job.progress;
  const actions = user.role === 'viewer' ? [] : JOB_ACTIONS[job.state];
  const inFlight = Object.entries(p.inFlight).filter(([, n]) => n > 0);
  return (
    <section class="page job-detail">
      <p class="breadcrumb">
        <Link href="/jobs">{t('detail.back')}</Link>
      </p>
      <header class="page-header">
        <h1 data-testid="job-title">{job.name}</h1>
        <JobStateBadge state={job.state} />
        <span class={`live-badge ${live ? 'on' : ''}`} data-testid="live-badge">
          {live ? t('fleet:live.connected') : t('fleet:live.reconnecting')}
        </span>
      </header>

      <div class="panel job-summary">
        <div class="job-summary-head">
          <ProgressBar percent={p.percentComplete} label={t('detail.progress')} />
          <span class="muted" data-testid="job-done-of">
            {t('list.doneOf', { done: p.devices.done, total: p.devices.total })}
          </span>
          <span class="muted">{t('detail.rate', { rate: new Intl.NumberFormat(document.documentElement.lang || 'en').format(p.ratePerMinute) })}</span>
        </div>
        {job.abortReason ? (
          <p class="notice warn" data-testid="abort-reason">
            {t('detail.aborted', { reason: job.abortReason })}
          </p>
        ) : null}
        <div class="tiles">
          <Count id="total" value={p.devices.total} label={t('counts.total')} tone="plain" />
          <Count id="pending" value={p.devices.pending} label={t('counts.pending')} tone="muted" />
          {p.devices.skipped > 0 ? <Count id="skipped" value={p.devices.skipped} label={t('counts.skipped')} tone="warn" /> : null}
          <Count id="active" value={p.devices.active} label={t('counts.active')} tone="plain" />
          {RESULTS.map((r) => (
            <Count key={r} id={r} value={p.results[r] ?? 0} label={t(executionKey(r))} tone={r === 'succeeded' ? 'ok' : r === 'cancelled' ? 'muted' : 'danger'} />
          ))}
        </div>
        {inFlight.length > 0 ? (
          <p class="muted" data-testid="in-flight">
            {`${t('detail.inFlight')}: ${inFlight.map(([s, n]) => `${t(executionKey(s), { defaultValue: s })} ${n}`).join(' · ')}`}
          </p>
        ) : null}
        {actions.length > 0 ? (
          <div class="row-actions job-actions">
            {actions.map((a) =>
              a === 'cancel' ? (
                confirmCancel ? (
                  <span key={a} class="confirm" role="group">
                    <span>{t('actions.cancelConfirm')}</span>
                    <button type="button" class="danger" disabled={busy} data-testid="job-cancel-confirm" onClick={() => void act('cancel')}>
                      {t('actions.cancelYes')}
                    </button>
                    <button type="button" class="secondary" disabled={busy} onClick={() => setConfirmCancel(false)}>
                      {t('actions.cancelNo')}
                    </button>
                  </span>
                ) : (
                  <button key={a} type="button" class="secondary" disabled={busy} data-testid="job-cancel" onClick={() => setConfirmCancel(true)}>
                    {t('actions.cancel')}
                  </button>
                )
              ) : (
                <button key={a} type="button" class="secondary" disabled={busy} data-testid={`job-${a}`} onClick={() => void act(a)}>
                  {t(`actions.${a}`)}
                </button>
              ),
            )}
          </div>
        ) : null}
        {message && message.language === currentLanguage() ? (
          <p class={message.kind} role={message.kind === 'error' ? 'alert' : 'status'} data-testid="job-message">
            {message.text}
          </p>
        ) : null}
      </div>

      <div class="detail-grid">
        <div class="panel">
          <h2>{t('detail.about')}</h2>
          <dl class="facts">
            <dt>{t('detail.source')}</dt>
            <dd>{sourceText(t, job, packetName)}</dd>
            <dt>{t('detail.target')}</dt>
            <dd>{targetText(t, job.target)}</dd>
            <dt>{t('detail.created')}</dt>
            <dd>{formatDateTime(job.createdAt)}</dd>
            {job.finishedAt ? (
              <>
                <dt>{t('detail.finished')}</dt>
                <dd>{formatDateTime(job.finishedAt)}</dd>
              </>
            ) : null}
          </dl>
        </div>
        <div class="panel">
          <h2>{t('detail.options')}</h2>
          <dl class="facts" data-testid="job-options">
            {optionFacts(t, job.options).map(([k, v]) => (
              <Fragment key={k}>
                <dt>{k}</dt>
                <dd>{v}</dd>
              </Fragment>
            ))}
          </dl>
        </div>
      </div>

      <h2>{t('detail.devices')}</h2>
      {rowsError ? (
        <p class="error" role="alert">
          {errorText(t, rowsError)}
        </p>
      ) : null}
      {rows === null ? null : rows.items.length === 0 ? <p class="muted">{t('devices.none')}</p> : <DeviceResults rows={rows.items} />}
      <Pager
        pageIndex={pageIndex}
        hasNext={Boolean(rows?.nextCursor)}
        onPrevious={() => setCursors(cursors.slice(0, -1))}
        onNext={() => rows?.nextCursor && setCursors([...cursors, rows.nextCursor])}
        nextTestId="devices-next"
      />
    </section>
  );
}
