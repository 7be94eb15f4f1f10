/**
 * World map of router positions: the countries of world-atlas (Natural Earth 1:110m) projected with
 * d3-geo and drawn to a canvas, the routers clustered by supercluster so that tens of thousands of
 * points draw as a few hundred circles at any zoom. Wheel or the buttons zoom, dragging pans.
 * Everything is drawn on the canvas: no inline styles, no markup per point.
 */
import { geoNaturalEarth1, geoPath, type GeoProjection } from 'd3-geo';
import type { Feature, FeatureCollection, Point } from 'geojson';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import Supercluster, { type ClusterProperties } from 'supercluster';
import { feature } from 'topojson-client';
import type { GeometryCollection, Topology } from 'topojson-specification';
import countries110m from 'world-atlas/countries-110m.json';

export type DeviceStatus = 'online' | 'unmanaged' | 'offline';

export interface LocationProps {
  uuid: string;
  name: string;
  status: DeviceStatus;
}

export type LocationCollection = FeatureCollection<Point, LocationProps>;

const topology = countries110m as unknown as Topology<{ countries: GeometryCollection }>;
const LAND = feature(topology, topology.objects.countries);

const COLOURS: Record<DeviceStatus | 'cluster', string> = {
  online: '#067647',
  unmanaged: '#b54708',
  offline: '#8a94a6',
  cluster: '#1f6feb',
};

const MAX_ZOOM = 8;

export interface WorldMapLabels {
  zoomIn: string;
  zoomOut: string;
  reset: string;
  /** The canvas's text alternative (e.g. "Map: 1,204 routers with a position"). */
  summary: string;
}

export function WorldMap(props: { data: LocationCollection | null; labels: WorldMapLabels }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [view, setView] = useState({ k: 1, x: 0, y: 0 });
  const [size, setSize] = useState({ width: 800, height: 420 });
  const drag = useRef<{ x: number; y: number; vx: number; vy: number } | null>(null);

  const index = useMemo(() => {
    const sc = new Supercluster<LocationProps>({ radius: 40, maxZoom: 16 });
    sc.load((props.data?.features ?? []) as Array<Feature<Point, LocationProps>>);
    return sc;
  }, [props.data]);

  useEffect(() => {
    const el = canvas.current?.parentElement;
    if (!el) return;
    const observer = new ResizeObserver(() => {
      const width = Math.max(320, Math.floor(el.clientWidth));
      setSize({ width, height: Math.round(width * 0.52) });
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  const projection = useMemo((): GeoProjection => {
    const p = geoNaturalEarth1().fitSize([size.width, size.height], { type: 'Sphere' });
    const [tx, ty] = p.translate();
    return p.scale(p.scale() * view.k).translate([tx * view.k + view.x, ty * view.k + view.y]);
  }, [size, view]);

  useEffect(() => {
    const el = canvas.current;
    if (!el) return;
    const ratio = window.devicePixelRatio || 1;
    el.width = size.width * ratio;
    el.height = size.height * ratio;
    el.style.width = `${size.width}px`;
    el.style.height = `${size.height}px`;
    const ctx = el.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = '#dce9f5';
    ctx.fillRect(0, 0, size.width, size.height);
    const path = geoPath(projection, ctx);
    ctx.beginPath();
    path(LAND);
    ctx.fillStyle = '#f4f1ea';
    ctx.fill();
    ctx.strokeStyle = '#b9b3a5';
    ctx.lineWidth = 0.5;
    ctx.stroke();

    // The visible part of the world as a longitude/latitude box, and a cluster zoom for the scale.
    const inv = (x: number, y: number) => projection.invert?.([x, y]) ?? [0, 0];
    const corners = [inv(0, 0), inv(size.width, 0), inv(0, size.height), inv(size.width, size.height)];
    const west = Math.max(-180, Math.min(...corners.map((c) => c[0])));
    const east = Math.min(180, Math.max(...corners.map((c) => c[0])));
    const south = Math.max(-85, Math.min(...corners.map((c) => c[1])));
    const north = Math.min(85, Math.max(...corners.map((c) => c[1])));
    const zoom = Math.max(0, Math.min(16, Math.round(Math.log2((view.k * size.width) / 512)) + 1));
    const clusters = view.k <= 1 ? index.getClusters([-180, -85, 180, 85], zoom) : index.getClusters([west, south, east, north], zoom);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.font = '600 11px system-ui, sans-serif';
    for (const c of clusters) {
      const xy = projection(c.geometry.coordinates as [number, number]);
      if (!xy) continue;
      const [x, y] = xy;
      const p = c.properties as Partial<ClusterProperties> & Partial<LocationProps>;
      if (p.cluster) {
        const n = p.point_count ?? 0;
        const r = Math.min(28, 8 + Math.log2(n) * 2.5);
        ctx.beginPath();
        ctx.arc(x, y, r, 0, Math.PI * 2);
        ctx.fillStyle = 'rgba(31, 111, 235, 0.78)';
        ctx.fill();
        ctx.fillStyle = '#fff';
        ctx.fillText(p.point_count_abbreviated !== undefined ? String(p.point_count_abbreviated) : String(n), x, y);
      } else {
        ctx.beginPath();
        ctx.arc(x, y, 4, 0, Math.PI * 2);
        ctx.fillStyle = COLOURS[(p.status as DeviceStatus | undefined) ?? 'offline'];
        ctx.fill();
        ctx.strokeStyle = '#fff';
        ctx.lineWidth = 1;
        ctx.stroke();
      }
    }
  }, [projection, index, size, view.k]);

  const zoomBy = (factor: number, cx = size.width / 2, cy = size.height / 2) =>
    setView((v) => {
      const k = Math.max(1, Math.min(2 ** MAX_ZOOM, v.k * factor));
      if (k === 1) return { k: 1, x: 0, y: 0 };
      // Screen = k × (the fitted map) + offset: the point under (cx, cy) stays there.
      const f = k / v.k;
      return { k, x: cx - f * (cx - v.x), y: cy - f * (cy - v.y) };
    });

  return (
    <div class="world-map">
      <canvas
        ref={canvas}
        role="img"
        aria-label={props.labels.summary}
        data-testid="world-map"
        onWheel={(e) => {
          e.preventDefault();
          const rect = (e.currentTarget as HTMLCanvasElement).getBoundingClientRect();
          zoomBy(e.deltaY < 0 ? 1.5 : 1 / 1.5, e.clientX - rect.left, e.clientY - rect.top);
        }}
        onPointerDown={(e) => {
          drag.current = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y };
          (e.currentTarget as HTMLCanvasElement).setPointerCapture(e.pointerId);
        }}
        onPointerMove={(e) => {
          const d = drag.current;
          if (!d || view.k === 1) return;
          setView((v) => ({ ...v, x: d.vx + e.clientX - d.x, y: d.vy + e.clientY - d.y }));
        }}
        onPointerUp={() => {
          drag.current = null;
        }}
      />
      <div class="map-controls">
        <button type="button" class="secondary" aria-label={props.labels.zoomIn} title={props.labels.zoomIn} onClick={() => zoomBy(2)}>
          +
        </button>
        <button type="button" class="secondary" aria-label={props.labels.zoomOut} title={props.labels.zoomOut} onClick={() => zoomBy(0.5)}>
          −
        </button>
        <button type="button" class="secondary" onClick={() => setView({ k: 1, x: 0, y: 0 })}>
          {props.labels.reset}
        </button>
      </div>
    </div>
  );
}
