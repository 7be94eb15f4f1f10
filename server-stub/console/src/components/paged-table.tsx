/**
 * One table of a list the server pages with cursors (`{items, nextCursor}`): the hook keeps the
 * cursors of the pages seen (so "previous" needs no cursor of its own), drops answers that arrive
 * after a newer request, and starts again on page 1 when the list's query changes or the server
 * refuses a cursor (the list changed under it). The component draws the loading and empty states,
 * the rows, optional sortable column headers, optional row selection and the pager.
 */
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError } from '../api.js';
import { useT } from '../i18n.js';
import { errorText } from './error-text.js';

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface PagedList<T, P extends Page<T> = Page<T>> {
  /** The page shown (with whatever the fetch added to it); null until the first answer. */
  readonly page: P | null;
  /** Why the last read failed (null after a good one). */
  readonly error: unknown;
  /** 0 for the first page. */
  readonly pageIndex: number;
  readonly hasNext: boolean;
  next(): void;
  previous(): void;
  /** Back to the first page. */
  restart(): void;
  /** Reads the page shown again (after a change, or when the live stream says something changed). */
  reload(): Promise<void>;
}

/**
 * Pages of `fetchPage(cursor)`. `query` identifies what is listed (filters, sort order): when it
 * changes, paging starts again on page 1.
 */
export function usePagedList<T, P extends Page<T> = Page<T>>(fetchPage: (cursor: string | undefined) => Promise<P>, query: unknown = null): PagedList<T, P> {
  const key = JSON.stringify(query);
  const [paging, setPaging] = useState<{ key: string; cursors: Array<string | undefined> }>({ key, cursors: [undefined] });
  const cursors = paging.key === key ? paging.cursors : [undefined];
  const setCursors = (next: Array<string | undefined>) => setPaging({ key, cursors: next });
  // The page and error of the query they answer: a page of the previous query (filter, search) is
  // not shown under the new one while its first page loads.
  const [answer, setAnswer] = useState<{ key: string; page: P | null; error: unknown }>({ key, page: null, error: null });
  const page = answer.key === key ? answer.page : null;
  const error = answer.key === key ? answer.error : null;
  const fetchRef = useRef(fetchPage);
  fetchRef.current = fetchPage;
  const generation = useRef(0);
  const pageIndex = cursors.length - 1;
  const cursor = cursors[pageIndex];

  const reload = useCallback(async () => {
    const mine = ++generation.current;
    try {
      const result = await fetchRef.current(cursor);
      if (mine !== generation.current) return;
      setAnswer({ key, page: result, error: null });
    } catch (err) {
      if (mine !== generation.current) return;
      if (err instanceof ApiError && err.code === 'SERVER_INVALID_CURSOR') setPaging({ key, cursors: [undefined] });
      setAnswer((a) => ({ key, page: a.key === key ? a.page : null, error: err }));
    }
  }, [key, pageIndex, cursor]);

  useEffect(() => {
    void reload();
  }, [reload]);

  return {
    page,
    error,
    pageIndex,
    hasNext: Boolean(page?.nextCursor),
    next: () => page?.nextCursor && setCursors([...cursors, page.nextCursor]),
    previous: () => pageIndex > 0 && setCursors(cursors.slice(0, -1)),
    restart: () => (pageIndex === 0 ? void reload() : setCursors([undefined])),
    reload,
  };
}

/** Every item of a paged list (pages read one after another), up to `max` items. */
export async function readAll<T>(url: string, max: number): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  do {
    const sep = url.includes('?') ? '&' : '?';
    const page: Page<T> = await api.get<Page<T>>(`${url}${sep}limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    out.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor !== null && out.length < max);
  return out;
}

/** Calls `fn` at most once per `ms` (the last call's `fn` runs); for reloads driven by the live stream. */
export function useThrottle(fn: () => void, ms: number): () => void {
  const ref = useRef({ fn, timer: undefined as ReturnType<typeof setTimeout> | undefined });
  ref.current.fn = fn;
  useEffect(() => () => clearTimeout(ref.current.timer), []);
  return useCallback(() => {
    const r = ref.current;
    r.timer ??= setTimeout(() => {
      r.timer = undefined;
      r.fn();
    }, ms);
  }, [ms]);
}

/** Previous / page n / next. */
export function Pager(props: { pageIndex: number; hasNext: boolean; onPrevious: () => void; onNext: () => void; nextTestId?: string }) {
  const t = useT('common');
  return (
    <nav class="paging">
      <button type="button" class="secondary" disabled={props.pageIndex === 0} onClick={props.onPrevious}>
        {t('paging.previous')}
      </button>
      <span>{t('paging.page', { page: props.pageIndex + 1 })}</span>
      <button type="button" class="secondary" disabled={!props.hasNext} data-testid={props.nextTestId} onClick={props.onNext}>
        {t('paging.next')}
      </button>
    </nav>
  );
}

export interface Column<T> {
  readonly id: string;
  readonly header: ComponentChildren;
  readonly cell: (row: T) => ComponentChildren;
  /** Class of the column's cells (not of its header). */
  readonly class?: string;
  /** The server's sort key for this column: its header sorts by it (with `sorting`/`onSort`). */
  readonly sort?: string;
}

export interface Sorting {
  readonly by: string;
  readonly order: 'asc' | 'desc';
}

export interface Selection<T> {
  readonly selected: ReadonlySet<string>;
  readonly onChange: (selected: Set<string>) => void;
  /** What the row's checkbox is called for screen readers (e.g. the device's name). */
  readonly label: (row: T) => string;
}

export function PagedTable<T>(props: {
  list: PagedList<T>;
  columns: readonly Column<T>[];
  rowKey: (row: T) => string;
  /** Extra attributes of a row (data-* for tests and styles). */
  rowAttrs?: (row: T) => Record<string, string>;
  testId: string;
  tableClass?: string;
  /** Shown instead of the table when the list is empty. */
  empty: ComponentChildren;
  /** Translates the list's errors (the page's namespace knows its codes); common texts otherwise. */
  errorT?: Parameters<typeof errorText>[0];
  sorting?: Sorting;
  onSort?: (sorting: Sorting) => void;
  selection?: Selection<T>;
  nextTestId?: string;
}) {
  const t = useT('common');
  const { list, selection } = props;
  const rows = list.page?.items ?? [];
  const keys = rows.map(props.rowKey);
  const allSelected = selection !== undefined && keys.length > 0 && keys.every((k) => selection.selected.has(k));
  const toggle = (k: string, on: boolean) => {
    if (!selection) return;
    const next = new Set(selection.selected);
    if (on) next.add(k);
    else next.delete(k);
    selection.onChange(next);
  };
  const header = (c: Column<T>) => {
    const s = props.sorting;
    if (!c.sort || !s || !props.onSort) return c.header;
    const active = s.by === c.sort;
    const order = active && s.order === 'asc' ? 'desc' : 'asc';
    return (
      <button type="button" class="link-button sort" data-sort={c.sort} onClick={() => props.onSort!({ by: c.sort!, order })}>
        {c.header}
        {active ? <span aria-hidden="true">{s.order === 'asc' ? ' ▲' : ' ▼'}</span> : null}
      </button>
    );
  };
  const ariaSort = (c: Column<T>): 'ascending' | 'descending' | undefined =>
    c.sort && props.sorting?.by === c.sort ? (props.sorting.order === 'asc' ? 'ascending' : 'descending') : undefined;

  return (
    <>
      {list.error ? (
        <p class="error" role="alert">
          {errorText(props.errorT ?? t, list.error)}
        </p>
      ) : null}
      {list.page === null ? (
        list.error ? null : (
          <p class="muted" aria-busy="true">
            {t('loading')}
          </p>
        )
      ) : rows.length === 0 ? (
        <p class="notice" data-testid={`${props.testId}-empty`}>
          {props.empty}
        </p>
      ) : (
        <div class="table-wrap">
          <table class={props.tableClass ?? 'data'} data-testid={props.testId}>
            <thead>
              <tr>
                {selection ? (
                  <th class="select">
                    <input
                      type="checkbox"
                      aria-label={t('table.selectPage')}
                      checked={allSelected}
                      onChange={(e) => {
                        const on = (e.currentTarget as HTMLInputElement).checked;
                        const next = new Set(selection.selected);
                        for (const k of keys) if (on) next.add(k);
                        else next.delete(k);
                        selection.onChange(next);
                      }}
                    />
                  </th>
                ) : null}
                {props.columns.map((c) => (
                  <th key={c.id} aria-sort={ariaSort(c)}>
                    {header(c)}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((row, i) => (
                <tr key={keys[i]} {...(props.rowAttrs?.(row) ?? {})}>
                  {selection ? (
                    <td class="select">
                      <input
                        type="checkbox"
                        name="select"
                        value={keys[i]}
                        aria-label={selection.label(row)}
                        checked={selection.selected.has(keys[i]!)}
                        onChange={(e) => toggle(keys[i]!, (e.currentTarget as HTMLInputElement).checked)}
                      />
                    </td>
                  ) : null}
                  {props.columns.map((c) => (
                    <td key={c.id} class={c.class}>
                      {c.cell(row)}
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager
        pageIndex={list.pageIndex}
        hasNext={list.hasNext}
        onPrevious={list.previous}
        onNext={list.next}
        {...(props.nextTestId ? { nextTestId: props.nextTestId } : {})}
      />
    </>
  );
}
