/**
 * A list of activity-log entries (newest first): when, severity, what (the device event's kind or
 * the system event's type, translated where known) and about which device. Every value is
 * rendered as text (Preact escapes it), whatever a router or a user put into it.
 */
import { formatDateTime, useT } from '../i18n.js';
import type { FleetEvent } from '../live.js';
import { Link } from './link.js';

/** i18next reads dots as nesting: event types are looked up with underscores. */
const key = (type: string) => type.replace(/[.-]/g, '_');

export function eventTitle(t: (key: string, options?: Record<string, unknown>) => string, e: FleetEvent): string {
  if (e.source === 'device') return t(`deviceEvents.${key(e.kind)}`, { defaultValue: e.kind });
  if (e.type === 'change' && typeof e.data['username'] === 'string') return t('systemEvents.change_by', { username: e.data['username'] });
  return t(`systemEvents.${key(e.type)}`, { defaultValue: e.type, count: typeof e.data['count'] === 'number' ? e.data['count'] : 0 });
}

export function EventList(props: { events: readonly FleetEvent[]; names?: ReadonlyMap<string, string>; testId?: string; showDevice?: boolean }) {
  const t = useT('fleet');
  if (props.events.length === 0) return <p class="muted">{t('events.none')}</p>;
  return (
    <ol class="event-list" data-testid={props.testId}>
      {props.events.map((e) => {
        const device = e.deviceUuid ?? (e.subject && /^[0-9a-f-]{36}$/.test(e.subject) ? e.subject : null);
        return (
          <li key={e.id} class={`event severity-${e.severity}`}>
            <time dateTime={e.at}>{formatDateTime(e.at)}</time>
            <span class="severity">{t(`severity.${e.severity}`, { defaultValue: e.severity })}</span>
            <span class="what">{eventTitle(t, e)}</span>
            {props.showDevice !== false && device ? (
              <Link href={`/devices/${device}`} class="subject">
                {props.names?.get(device) ?? device.slice(0, 8)}
              </Link>
            ) : e.subject && !device ? (
              <span class="subject">{e.subject}</span>
            ) : null}
          </li>
        );
      })}
    </ol>
  );
}
