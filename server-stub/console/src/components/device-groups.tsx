/**
 * What the Devices area's pages share about device groups: the group as the REST API sends it,
 * reading all of them for a choice, and the links between the area's pages.
 */
import { useT } from '../i18n.js';
import { Link } from './link.js';
import { useCan } from './page-kit.js';
import { readAll } from './paged-table.js';

export interface Group {
  uuid: string;
  name: string;
  description: string;
  deviceCount: number;
  createdAt: string;
}

/** A group as offered in a choice. */
export type GroupChoice = Pick<Group, 'uuid' | 'name' | 'deviceCount'>;

/** Most groups offered in a choice. */
const MAX_GROUPS = 500;

export function allGroups(): Promise<Group[]> {
  return readAll<Group>('/api/inventory/device-groups', MAX_GROUPS);
}

/** The header of the Devices area's list pages: the page's title and the area's links. */
export function DevicesHeader(props: { title: string; current: 'devices' | 'groups' }) {
  const canImport = useCan('operator');
  return (
    <header class="page-header">
      <h1>{props.title}</h1>
      <DevicesNav current={props.current} canImport={canImport} />
    </header>
  );
}

/** Devices · Groups · CSV import (the last for those who may change the inventory). */
function DevicesNav(props: { current: 'devices' | 'groups'; canImport: boolean }) {
  const t = useT('devices');
  const entries = [
    { key: 'devices', href: '/devices' },
    { key: 'groups', href: '/devices/groups' },
  ] as const;
  return (
    <nav class="sub-nav" aria-label={t('area.label')}>
      {entries.map((e) => (
        <Link key={e.key} href={e.href} current={e.key === props.current} class={e.key === props.current ? 'active' : undefined}>
          {t(`area.${e.key}`)}
        </Link>
      ))}
      {props.canImport ? <Link href="/devices/import">{t('import.title')}</Link> : null}
    </nav>
  );
}
