/** The fleet's device counts as tiles, each a link to the device list filtered the same way. */
import { useT } from '../i18n.js';
import type { FleetCounts } from '../live.js';
import { Link } from './link.js';

const TILES: ReadonlyArray<{ key: keyof FleetCounts; href: string; tone: string }> = [
  { key: 'online', href: '/devices?status=online', tone: 'ok' },
  { key: 'unmanaged', href: '/devices?status=unmanaged', tone: 'warn' },
  { key: 'offline', href: '/devices?status=offline', tone: 'muted' },
  { key: 'rejected', href: '/devices?admission=rejected', tone: 'danger' },
  { key: 'total', href: '/devices', tone: 'plain' },
];

export function CountTiles(props: { counts: FleetCounts | null }) {
  const t = useT('fleet');
  const number = new Intl.NumberFormat(document.documentElement.lang || 'en');
  return (
    <div class="tiles">
      {TILES.map((tile) => (
        <Link key={tile.key} href={tile.href} class={`tile tone-${tile.tone}`}>
          <span class="tile-value" data-testid={`count-${tile.key}`}>
            {props.counts ? number.format(props.counts[tile.key]) : '–'}
          </span>
          <span class="tile-label">{t(`counts.${tile.key}`)}</span>
        </Link>
      ))}
    </div>
  );
}
