/**
 * Dashboard: device counts and the latest events live from the server's stream (no reload, no
 * polling of the device list), firmware versions and device types as bar charts, and the world map
 * of router positions. Charts and map are read again a few seconds after the counts change (a
 * router that connects reports its firmware and position), at most every REFRESH_MS.
 */
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { type Bar, BarChart } from '../components/bar-chart.js';
import { CountTiles } from '../components/count-tiles.js';
import { errorText } from '../components/error-text.js';
import { EventList } from '../components/event-list.js';
import { type LocationCollection, WorldMap } from '../components/world-map.js';
import { useT } from '../i18n.js';
import { type FleetCounts, type FleetEvent, useLiveStream } from '../live.js';
import type { PageProps } from '../router.js';
import '../styles/fleet.css';

const REFRESH_MS = 5_000;
const MAP_REFRESH_MS = 30_000;
const EVENTS_SHOWN = 20;

/** Device names for the uuids events mention (read once each, kept for the page's life). */
function useDeviceNames(events: readonly FleetEvent[]): ReadonlyMap<string, string> {
  const [names, setNames] = useState<ReadonlyMap<string, string>>(new Map());
  const asked = useRef(new Set<string>());
  useEffect(() => {
    const wanted = [...new Set(events.map((e) => e.deviceUuid).filter((u): u is string => u !== null))].filter((u) => !asked.current.has(u));
    if (wanted.length === 0) return;
    for (const u of wanted) asked.current.add(u);
    void Promise.all(
      wanted.map((u) =>
        api
          .get<{ uuid: string; name: string; serialNumber: string }>(`/api/inventory/managed-devices/${u}`)
          .then((d) => [u, d.name || d.serialNumber] as const)
          .catch(() => undefined),
      ),
    ).then((found) =>
      setNames((prev) => {
        const next = new Map(prev);
        for (const f of found) if (f) next.set(f[0], f[1]);
        return next;
      }),
    );
  }, [events]);
  return names;
}

export default function DashboardPage(_props: PageProps) {
  const t = useT('dashboard');
  const [counts, setCounts] = useState<FleetCounts | null>(null);
  const [events, setEvents] = useState<FleetEvent[]>([]);
  const [firmware, setFirmware] = useState<Bar[]>([]);
  const [models, setModels] = useState<Bar[]>([]);
  const [locations, setLocations] = useState<LocationCollection | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState(false);
  const timers = useRef<{ charts?: ReturnType<typeof setTimeout>; map?: ReturnType<typeof setTimeout>; mapAt: number }>({ mapAt: 0 });
  const names = useDeviceNames(events);

  const loadCharts = useCallback(async () => {
    try {
      const [fw, types] = await Promise.all([
        api.get<{ items: Array<{ firmware: string | null; count: number }> }>('/api/dashboard/firmware'),
        api.get<{ items: Array<{ model: string | null; count: number }> }>('/api/dashboard/device-types'),
      ]);
      setFirmware(fw.items.map((i) => ({ label: i.firmware ?? t('unknown'), count: i.count })));
      setModels(types.items.map((i) => ({ label: i.model ?? t('unknown'), count: i.count })));
      setError(null);
    } catch (err) {
      setError(err);
    }
  }, [t]);

  const loadMap = useCallback(async () => {
    timers.current.mapAt = Date.now();
    try {
      setLocations(await api.get<LocationCollection>('/api/dashboard/locations'));
    } catch (err) {
      setError(err);
    }
  }, []);

  useEffect(() => {
    void loadCharts();
    void loadMap();
    const current = timers.current;
    return () => {
      clearTimeout(current.charts);
      clearTimeout(current.map);
    };
  }, []);

  const changed = () => {
    const tm = timers.current;
    tm.charts ??= setTimeout(() => {
      tm.charts = undefined;
      void loadCharts();
    }, REFRESH_MS);
    tm.map ??= setTimeout(
      () => {
        tm.map = undefined;
        void loadMap();
      },
      Math.max(REFRESH_MS, MAP_REFRESH_MS - (Date.now() - tm.mapAt)),
    );
  };

  useLiveStream({
    hello: () => setLive(true),
    counts: (c) => {
      setCounts((prev) => {
        if (prev !== null) changed();
        return c;
      });
    },
    events: ({ items, snapshot }) =>
      setEvents((prev) => {
        const merged = snapshot ? [...items].reverse() : [...[...items].reverse(), ...prev];
        const seen = new Set<number>();
        return merged.filter((e) => !seen.has(e.id) && seen.add(e.id)).slice(0, EVENTS_SHOWN);
      }),
  });

  const located = locations?.features.length ?? 0;
  return (
    <section class="page dashboard">
      <header class="page-header">
        <h1>{t('title')}</h1>
        <span class={`live-badge ${live ? 'on' : ''}`} data-testid="live-badge">
          {live ? t('fleet:live.connected') : t('fleet:live.reconnecting')}
        </span>
      </header>
      {error ? <p class="error" role="alert">{errorText(t, error)}</p> : null}
      <CountTiles counts={counts} />
      <div class="dashboard-grid">
        <section class="panel">
          <h2>{t('firmware')}</h2>
          {firmware.length ? <BarChart bars={firmware} label={t('devicesLabel')} otherLabel={t('other')} testId="firmware-chart" /> : <p class="muted">{t('noData')}</p>}
        </section>
        <section class="panel">
          <h2>{t('deviceTypes')}</h2>
          {models.length ? <BarChart bars={models} label={t('devicesLabel')} otherLabel={t('other')} testId="types-chart" /> : <p class="muted">{t('noData')}</p>}
        </section>
        <section class="panel wide">
          <h2>{t('map')}</h2>
          <WorldMap
            data={locations}
            labels={{ zoomIn: t('zoomIn'), zoomOut: t('zoomOut'), reset: t('reset'), summary: t('mapSummary', { count: located }) }}
          />
          <ul class="legend">
            {(['online', 'unmanaged', 'offline', 'cluster'] as const).map((k) => (
              <li key={k} class={`legend-${k}`}>
                {t(`legend.${k}`)}
              </li>
            ))}
          </ul>
        </section>
        <section class="panel wide">
          <h2>{t('latestEvents')}</h2>
          <EventList events={events} names={names} testId="latest-events" />
        </section>
      </div>
    </section>
  );
}
