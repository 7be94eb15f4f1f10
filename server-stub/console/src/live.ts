/**
 * The server's live stream (GET /api/console/stream, server-sent events): fleet counts and new
 * events, or one job's progress and changed device rows. EventSource reconnects by itself; each
 * connection starts with `hello`, after which a page reloads what it shows (it may have missed
 * changes meanwhile). `end` with reason `session-ended` means the login is over.
 */
import { useEffect, useRef } from 'preact/hooks';
import { api } from './api.js';

export interface FleetCounts {
  total: number;
  online: number;
  unmanaged: number;
  offline: number;
  rejected: number;
}

export interface FleetEvent {
  id: number;
  source: 'device' | 'system';
  type: string;
  kind: string;
  severity: string;
  deviceUuid: string | null;
  subject: string | null;
  data: Record<string, unknown>;
  at: string;
}

export type LiveHandlers = Partial<{
  hello: () => void;
  counts: (c: FleetCounts) => void;
  events: (e: { items: FleetEvent[]; snapshot: boolean }) => void;
  job: (j: unknown) => void;
  devices: (d: { items: unknown[] }) => void;
}>;

/** Subscribes while the component is mounted; handlers may change between renders. */
export function useLiveStream(handlers: LiveHandlers, job?: string): void {
  const ref = useRef(handlers);
  ref.current = handlers;
  useEffect(() => {
    const url = job ? `/api/console/stream?job=${encodeURIComponent(job)}` : '/api/console/stream';
    const source = new EventSource(url, { withCredentials: true });
    const on = (name: keyof LiveHandlers) =>
      source.addEventListener(name, (e) => {
        const handler = ref.current[name] as ((data: unknown) => void) | undefined;
        handler?.(JSON.parse((e as MessageEvent<string>).data));
      });
    for (const name of ['hello', 'counts', 'events', 'job', 'devices'] as const) on(name);
    source.addEventListener('end', (e) => {
      const reason = (JSON.parse((e as MessageEvent<string>).data) as { reason: string }).reason;
      source.close();
      // The session ended: asking for it tells the shell (a 401 shows the login).
      if (reason === 'session-ended') void api.get('/api/me').catch(() => undefined);
    });
    return () => source.close();
  }, [job]);
}
