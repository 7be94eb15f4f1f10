/**
 * A new update job (`/jobs/new`): one of the account's packets for one device, a group or all
 * devices, with the rollout options of POST /api/jobs (concurrency, rate, waves, timeouts,
 * retries, abort threshold, maintenance window, downgrade, dynamic membership). Empty option
 * fields are left out (the server's defaults apply). After creating, the job's page opens.
 */
import type { TFunction } from 'i18next';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { allGroups, type GroupChoice } from '../components/device-groups.js';
import { errorText } from '../components/error-text.js';
import type { Job, Page } from '../components/job-parts.js';
import { Link } from '../components/link.js';
import { readAll } from '../components/paged-table.js';
import { parseDayTime, parseTime } from '../day-input.js';
import { currentLanguage, formatDateTime, i18n, useT } from '../i18n.js';
import { navigate } from '../router.js';

interface Packet {
  uuid: string;
  name: string;
  origin: 'upload' | 'build' | 'vendor';
  version: string | null;
  model: string | null;
  signed: boolean;
  createdAt: string;
}

interface DeviceHit {
  uuid: string;
  serialNumber: string;
  name: string;
  model: string | null;
  firmware: string | null;
}

type TargetKind = 'device' | 'group' | 'all';
type WindowKind = 'none' | 'once' | 'weekly';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
/** Most packets and groups offered (pages of the API read one after another). */
const MAX_CHOICES = 500;
const SEARCH_DELAY_MS = 250;

interface Form {
  name: string;
  packetUuid: string;
  target: TargetKind;
  deviceUuid: string;
  groupUuid: string;
  maxConcurrent: string;
  maxPerMinute: string;
  waves: string;
  rebootTimeoutSec: string;
  timeoutSec: string;
  retries: string;
  retryDelaySec: string;
  abortPercent: string;
  abortMin: string;
  window: WindowKind;
  windowStart: string;
  windowEnd: string;
  days: string[];
  startTime: string;
  endTime: string;
  allowDowngrade: boolean;
  dynamic: boolean;
}

const EMPTY: Form = {
  name: '',
  packetUuid: '',
  target: 'all',
  deviceUuid: '',
  groupUuid: '',
  maxConcurrent: '',
  maxPerMinute: '',
  waves: '',
  rebootTimeoutSec: '',
  timeoutSec: '',
  retries: '',
  retryDelaySec: '',
  abortPercent: '',
  abortMin: '',
  window: 'none',
  windowStart: '',
  windowEnd: '',
  days: ['sat', 'sun'],
  startTime: '02:00',
  endTime: '05:00',
  allowDowngrade: false,
  dynamic: false,
};

/** A field the form refuses before asking the server; `key` names its message in jobs:form.invalid. */
class FieldError extends Error {
  constructor(
    readonly field: string,
    readonly key: string,
    readonly values: Record<string, unknown> = {},
  ) {
    super(field);
  }
}

function integer(value: string, field: string, min: number, max: number): number | undefined {
  const v = value.trim();
  if (v === '') return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) throw new FieldError(field, 'integer', { min, max });
  return n;
}

function percent(value: string, field: string): number | undefined {
  const v = value.trim().replace(',', '.');
  if (v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 100) throw new FieldError(field, 'percent');
  return n;
}

/** `10, 50, 100` → [10, 50, 100]: ascending percentages in (0, 100]. */
function waves(value: string): number[] | undefined {
  const v = value.trim();
  if (v === '') return undefined;
  const out = v.split(/[\s;,]+/).filter(Boolean).map(Number);
  if (out.length > 20 || out.some((n, i) => !Number.isFinite(n) || n <= 0 || n > 100 || (i > 0 && n <= out[i - 1]!))) {
    throw new FieldError('waves', 'waves');
  }
  return out;
}

/** A typed day and time (UTC) in the console's pattern, e.g. `11.01.2026 14:30`, as an ISO time. */
function utc(value: string, field: string): string {
  if (!value.trim()) throw new FieldError(field, 'required');
  const at = parseDayTime(value);
  if (at === null) throw new FieldError(field, 'dateTime', { pattern: i18n.t('common:date.dateTimePlaceholder') });
  return new Date(`${at}:00Z`).toISOString();
}

/** A typed 24-hour time, e.g. `02:00`. */
function time(value: string, field: string): string {
  const at = parseTime(value);
  if (at === null) throw new FieldError(field, 'time', { pattern: i18n.t('common:date.timePlaceholder') });
  return at;
}

/** The body of POST /api/jobs for the form; throws FieldError for what is not valid. */
export function jobBody(f: Form): Record<string, unknown> {
  if (!f.packetUuid) throw new FieldError('packet', 'required');
  const target =
    f.target === 'all'
      ? { all: true }
      : f.target === 'group'
        ? { groupUuids: f.groupUuid ? [f.groupUuid] : [] }
        : { deviceUuids: f.deviceUuid ? [f.deviceUuid] : [] };
  if (f.target === 'group' && !f.groupUuid) throw new FieldError('group', 'required');
  if (f.target === 'device' && !f.deviceUuid) throw new FieldError('device', 'required');

  const rollout: Record<string, unknown> = {};
  const maxConcurrent = integer(f.maxConcurrent, 'maxConcurrent', 1, 1_000_000);
  const maxPerMinute = integer(f.maxPerMinute, 'maxPerMinute', 1, 1_000_000);
  const rebootTimeoutSec = integer(f.rebootTimeoutSec, 'rebootTimeout', 1, 86_400);
  const w = waves(f.waves);
  if (maxConcurrent !== undefined) rollout['maxConcurrent'] = maxConcurrent;
  if (maxPerMinute !== undefined) rollout['maxPerMinute'] = maxPerMinute;
  if (w !== undefined) rollout['waves'] = w;
  if (rebootTimeoutSec !== undefined) rollout['rebootTimeoutSec'] = rebootTimeoutSec;

  const options: Record<string, unknown> = {};
  if (Object.keys(rollout).length > 0) options['rollout'] = rollout;
  const timeoutSec = integer(f.timeoutSec, 'timeout', 1, 30 * 86_400);
  if (timeoutSec !== undefined) options['timeoutSec'] = timeoutSec;
  const retries = integer(f.retries, 'retries', 0, 100);
  const retryDelaySec = integer(f.retryDelaySec, 'retryDelay', 0, 86_400);
  if (retries !== undefined) options['retries'] = { max: retries, ...(retryDelaySec !== undefined ? { delaySec: retryDelaySec } : {}) };
  else if (retryDelaySec !== undefined) throw new FieldError('retries', 'required');
  const abortPercent = percent(f.abortPercent, 'abortPercent');
  const abortMin = integer(f.abortMin, 'abortMin', 1, 1_000_000);
  if ((abortPercent === undefined) !== (abortMin === undefined)) throw new FieldError(abortPercent === undefined ? 'abortPercent' : 'abortMin', 'required');
  if (abortPercent !== undefined && abortMin !== undefined) options['abort'] = { failurePercent: abortPercent, minFailures: abortMin };
  if (f.window === 'once') {
    const start = utc(f.windowStart, 'windowStart');
    const end = utc(f.windowEnd, 'windowEnd');
    if (Date.parse(end) <= Date.parse(start)) throw new FieldError('windowEnd', 'windowOrder');
    options['window'] = { start, end };
  } else if (f.window === 'weekly') {
    if (f.days.length === 0) throw new FieldError('days', 'required');
    const startTime = time(f.startTime, 'startTime');
    const endTime = time(f.endTime, 'endTime');
    if (startTime === endTime) throw new FieldError('endTime', 'sameTime');
    options['window'] = { days: f.days, startTime, endTime, timeZone: 'UTC' };
  }
  if (f.allowDowngrade) options['allowDowngrade'] = true;
  if (f.dynamic && f.target !== 'device') options['dynamic'] = true;

  return {
    ...(f.name.trim() ? { name: f.name.trim() } : {}),
    packetUuid: f.packetUuid,
    target,
    ...(Object.keys(options).length > 0 ? { options } : {}),
  };
}

function packetLabel(t: TFunction, p: Packet): string {
  const extra = [p.version ? t('form.packetVersion', { version: p.version }) : null, formatDateTime(p.createdAt)].filter(Boolean);
  return `${p.name} (${extra.join(', ')})`;
}

export default function JobNew() {
  const t = useT('jobs');
  // `?groupUuid=` (the link on a group's page) starts with that group as the target.
  const [form, setForm] = useState<Form>(() => {
    const groupUuid = new URLSearchParams(location.search).get('groupUuid');
    return groupUuid ? { ...EMPTY, target: 'group', groupUuid } : EMPTY;
  });
  const [packets, setPackets] = useState<Packet[] | null>(null);
  const [groups, setGroups] = useState<GroupChoice[]>([]);
  const [search, setSearch] = useState('');
  const [hits, setHits] = useState<DeviceHit[]>([]);
  const [loadError, setLoadError] = useState<unknown>(null);
  /** The refusal of the last submit, in the language of that moment (left out after a switch). */
  const [error, setError] = useState<{ field: string | null; text: string; language: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const searchSeq = useRef(0);

  useEffect(() => {
    Promise.all([readAll<Packet>('/api/packets', MAX_CHOICES), allGroups()])
      .then(([p, g]) => {
        setPackets(p.slice().reverse());
        setGroups(g);
        // A group named in the address that is not (or no longer) the account's is no choice.
        setForm((f) => (f.groupUuid && !g.some((x) => x.uuid === f.groupUuid) ? { ...f, groupUuid: '' } : f));
        setForm((f) => (f.packetUuid || p.length === 0 ? f : { ...f, packetUuid: p.at(-1)!.uuid }));
      })
      .catch((err: unknown) => setLoadError(err));
  }, []);

  // Devices matching the search text (name, serial number or location), found by the server.
  useEffect(() => {
    if (form.target !== 'device') return;
    const mine = ++searchSeq.current;
    const timer = setTimeout(() => {
      const p = new URLSearchParams({ limit: '20', sort: 'name' });
      if (search.trim()) p.set('text', search.trim());
      api
        .get<Page<DeviceHit>>(`/api/inventory/managed-devices?${p.toString()}`)
        .then((page) => {
          if (mine !== searchSeq.current) return;
          setHits(page.items);
          setForm((f) => (page.items.some((d) => d.uuid === f.deviceUuid) ? f : { ...f, deviceUuid: page.items[0]?.uuid ?? '' }));
        })
        .catch(() => undefined);
    }, SEARCH_DELAY_MS);
    return () => clearTimeout(timer);
  }, [search, form.target]);

  const set = <K extends keyof Form>(key: K, value: Form[K]) => setForm((f) => ({ ...f, [key]: value }));
  const text = (key: keyof Form & string, label: string, props: Record<string, unknown> = {}) => (
    <label class={error?.field === key ? 'invalid' : undefined}>
      <span>{label}</span>
      <input
        name={key}
        value={form[key] as string}
        inputMode={props['inputMode'] as string | undefined}
        placeholder={props['placeholder'] as string | undefined}
        onInput={(e) => set(key, (e.currentTarget as HTMLInputElement).value as never)}
      />
    </label>
  );

  const submit = async (e: Event) => {
    e.preventDefault();
    let body: Record<string, unknown>;
    try {
      body = jobBody(form);
    } catch (err) {
      if (err instanceof FieldError) {
        setError({ field: err.field, text: t(`form.invalid.${err.key}`, { field: t(`form.fields.${err.field}`), ...err.values }), language: currentLanguage() });
        return;
      }
      throw err;
    }
    setBusy(true);
    setError(null);
    try {
      const job = await api.post<Job>('/api/jobs', body);
      navigate(`/jobs/${job.uuid}`);
    } catch (err) {
      setError({ field: null, text: errorText(t, err), language: currentLanguage() });
    } finally {
      setBusy(false);
    }
  };

  if (loadError) {
    return (
      <section class="page">
        <h1>{t('form.title')}</h1>
        <p class="error" role="alert">
          {errorText(t, loadError)}
        </p>
        <Link href="/jobs">{t('detail.back')}</Link>
      </section>
    );
  }

  return (
    <section class="page job-new">
      <p class="breadcrumb">
        <Link href="/jobs">{t('detail.back')}</Link>
      </p>
      <h1>{t('form.title')}</h1>
      {packets === null ? (
        <p class="muted" aria-busy="true">
          {t('common:loading')}
        </p>
      ) : packets.length === 0 ? (
        <p class="notice" data-testid="no-packets">
          {t('form.noPackets')}
        </p>
      ) : (
        <form class="job-form" data-testid="job-form" onSubmit={(e) => void submit(e)} noValidate>
          <fieldset class="panel stacked">
            <legend>{t('form.what')}</legend>
            {text('name', t('form.fields.name'), { placeholder: t('form.namePlaceholder') })}
            <label class={error?.field === 'packet' ? 'invalid' : undefined}>
              <span>{t('form.fields.packet')}</span>
              <select name="packetUuid" value={form.packetUuid} onChange={(e) => set('packetUuid', (e.currentTarget as HTMLSelectElement).value)}>
                {packets.map((p) => (
                  <option key={p.uuid} value={p.uuid}>
                    {packetLabel(t, p)}
                  </option>
                ))}
              </select>
            </label>
          </fieldset>

          <fieldset class="panel stacked">
            <legend>{t('form.target')}</legend>
            <div class="choice-row" role="radiogroup">
              {(['device', 'group', 'all'] as const).map((k) => (
                <label key={k} class="choice">
                  <input
                    type="radio"
                    name="target"
                    value={k}
                    checked={form.target === k}
                    onChange={() => {
                      set('target', k);
                      // A refusal about another target's field no longer applies.
                      setError(null);
                    }}
                  />
                  <span>{t(`form.targetKind.${k}`)}</span>
                </label>
              ))}
            </div>
            {form.target === 'device' ? (
              <div class="form-row">
                <label>
                  <span>{t('form.search')}</span>
                  <input name="deviceSearch" value={search} placeholder={t('form.searchPlaceholder')} onInput={(e) => setSearch((e.currentTarget as HTMLInputElement).value)} />
                </label>
                <label class={error?.field === 'device' ? 'invalid' : undefined}>
                  <span>{t('form.fields.device')}</span>
                  <select name="deviceUuid" value={form.deviceUuid} onChange={(e) => set('deviceUuid', (e.currentTarget as HTMLSelectElement).value)}>
                    {hits.length === 0 ? <option value="">{t('form.noDevices')}</option> : null}
                    {hits.map((d) => (
                      <option key={d.uuid} value={d.uuid}>
                        {d.name ? `${d.name} (${d.serialNumber})` : d.serialNumber}
                      </option>
                    ))}
                  </select>
                </label>
              </div>
            ) : null}
            {form.target === 'group' ? (
              <label class={error?.field === 'group' ? 'invalid' : undefined}>
                <span>{t('form.fields.group')}</span>
                <select name="groupUuid" value={form.groupUuid} onChange={(e) => set('groupUuid', (e.currentTarget as HTMLSelectElement).value)}>
                  <option value="">{groups.length === 0 ? t('form.noGroups') : t('form.chooseGroup')}</option>
                  {groups.map((g) => (
                    <option key={g.uuid} value={g.uuid}>
                      {t('form.groupOption', { name: g.name, count: g.deviceCount })}
                    </option>
                  ))}
                </select>
              </label>
            ) : null}
            {form.target !== 'device' ? (
              <label class="choice">
                <input type="checkbox" name="dynamic" checked={form.dynamic} onChange={(e) => set('dynamic', (e.currentTarget as HTMLInputElement).checked)} />
                <span>{t(form.target === 'all' ? 'form.dynamicAll' : 'form.dynamicGroup')}</span>
              </label>
            ) : null}
          </fieldset>

          <fieldset class="panel">
            <legend>{t('form.rollout')}</legend>
            <p class="muted small">{t('form.rolloutHint')}</p>
            <div class="form-grid">
              {text('maxConcurrent', t('form.fields.maxConcurrent'), { inputMode: 'numeric', placeholder: t('form.unlimited') })}
              {text('maxPerMinute', t('form.fields.maxPerMinute'), { inputMode: 'numeric', placeholder: t('form.unlimited') })}
              {text('waves', t('form.fields.waves'), { placeholder: '10, 50, 100' })}
              {text('timeoutSec', t('form.fields.timeout'), { inputMode: 'numeric', placeholder: '3600' })}
              {text('rebootTimeoutSec', t('form.fields.rebootTimeout'), { inputMode: 'numeric', placeholder: '600' })}
              {text('retries', t('form.fields.retries'), { inputMode: 'numeric', placeholder: '0' })}
              {text('retryDelaySec', t('form.fields.retryDelay'), { inputMode: 'numeric', placeholder: '0' })}
              {text('abortPercent', t('form.fields.abortPercent'), { inputMode: 'decimal' })}
              {text('abortMin', t('form.fields.abortMin'), { inputMode: 'numeric' })}
            </div>
            <label class="choice">
              <input
                type="checkbox"
                name="allowDowngrade"
                checked={form.allowDowngrade}
                onChange={(e) => set('allowDowngrade', (e.currentTarget as HTMLInputElement).checked)}
              />
              <span>{t('form.fields.allowDowngrade')}</span>
            </label>
          </fieldset>

          <fieldset class="panel stacked">
            <legend>{t('form.window')}</legend>
            <label>
              <span>{t('form.windowKind.label')}</span>
              <select name="window" value={form.window} onChange={(e) => set('window', (e.currentTarget as HTMLSelectElement).value as WindowKind)}>
                {(['none', 'once', 'weekly'] as const).map((k) => (
                  <option key={k} value={k}>
                    {t(`form.windowKind.${k}`)}
                  </option>
                ))}
              </select>
            </label>
            {form.window === 'once' ? (
              <div class="form-row">
                <label class={error?.field === 'windowStart' ? 'invalid' : undefined}>
                  <span>{t('form.fields.windowStart')}</span>
                  <input name="windowStart" autoComplete="off" placeholder={t('common:date.dateTimePlaceholder')} value={form.windowStart} onInput={(e) => set('windowStart', (e.currentTarget as HTMLInputElement).value)} />
                </label>
                <label class={error?.field === 'windowEnd' ? 'invalid' : undefined}>
                  <span>{t('form.fields.windowEnd')}</span>
                  <input name="windowEnd" autoComplete="off" placeholder={t('common:date.dateTimePlaceholder')} value={form.windowEnd} onInput={(e) => set('windowEnd', (e.currentTarget as HTMLInputElement).value)} />
                </label>
              </div>
            ) : null}
            {form.window === 'weekly' ? (
              <>
                <div class="choice-row" role="group" aria-label={t('form.fields.days')}>
                  {DAYS.map((d) => (
                    <label key={d} class="choice">
                      <input
                        type="checkbox"
                        name="days"
                        value={d}
                        checked={form.days.includes(d)}
                        onChange={(e) => {
                          const on = (e.currentTarget as HTMLInputElement).checked;
                          set('days', on ? [...form.days, d] : form.days.filter((x) => x !== d));
                        }}
                      />
                      <span>{t(`days.${d}`)}</span>
                    </label>
                  ))}
                </div>
                <div class="form-row">
                  <label class={error?.field === 'startTime' ? 'invalid' : undefined}>
                    <span>{t('form.fields.startTime')}</span>
                    <input name="startTime" inputMode="numeric" autoComplete="off" size={5} placeholder={t('common:date.timePlaceholder')} value={form.startTime} onInput={(e) => set('startTime', (e.currentTarget as HTMLInputElement).value)} />
                  </label>
                  <label class={error?.field === 'endTime' ? 'invalid' : undefined}>
                    <span>{t('form.fields.endTime')}</span>
                    <input name="endTime" inputMode="numeric" autoComplete="off" size={5} placeholder={t('common:date.timePlaceholder')} value={form.endTime} onInput={(e) => set('endTime', (e.currentTarget as HTMLInputElement).value)} />
                  </label>
                </div>
              </>
            ) : null}
            {form.window !== 'none' ? <p class="muted small">{t('form.windowUtc')}</p> : null}
          </fieldset>

          {error && error.language === currentLanguage() ? (
            <p class="error" role="alert" data-testid="job-form-error">
              {error.text}
            </p>
          ) : null}
          <div class="form-actions">
            <button type="submit" class="primary" disabled={busy} data-testid="job-create">
              {t('form.submit')}
            </button>
            <Link href="/jobs">{t('common:actions.cancel')}</Link>
          </div>
        </form>
      )}
    </section>
  );
}
