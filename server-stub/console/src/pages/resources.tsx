/**
 * Resources: update packets (upload, build, MANIFEST), the vendor firmware catalogue with Smart
 * Updates, configuration templates with per-device parameters, and the certificate store. Each
 * section is a sub-path (/resources/<section>[/<uuid>]), so it can be linked and reloaded.
 */
import { Link } from '../components/link.js';
import { useT } from '../i18n.js';
import type { PageProps } from '../router.js';
import { CertificatesSection } from './resources/certificates.js';
import { FirmwareSection } from './resources/firmware.js';
import { PacketDetail, PacketList } from './resources/packets.js';
import { TemplateDetail, TemplateList } from './resources/templates.js';
import '../styles/resources.css';

const SECTIONS = ['packets', 'firmware', 'templates', 'certificates'] as const;
type SectionKey = (typeof SECTIONS)[number];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `/resources/<section>/<id>` → the section (packets when none) and the id, if any. */
export function parseResourcesPath(path: string): { section: SectionKey | null; id: string | null } {
  const [section = 'packets', id = null, ...rest] = path.replace(/^\/resources\/?/, '').split('/').filter((s) => s !== '');
  if (!(SECTIONS as readonly string[]).includes(section) || rest.length > 0) return { section: null, id: null };
  if (id !== null && (!UUID.test(id) || (section !== 'packets' && section !== 'templates'))) return { section: null, id: null };
  return { section: section as SectionKey, id };
}

export default function ResourcesPage(props: PageProps) {
  const t = useT('resources');
  const { section, id } = parseResourcesPath(props.path);
  let body;
  if (section === 'packets') body = id ? <PacketDetail uuid={id} /> : <PacketList />;
  else if (section === 'firmware') body = <FirmwareSection />;
  else if (section === 'templates') body = id ? <TemplateDetail uuid={id} /> : <TemplateList />;
  else if (section === 'certificates') body = <CertificatesSection />;
  else body = <p class="notice">{t('common:notFound.text')}</p>;
  return (
    <section class="page resources">
      <h1>{t('title')}</h1>
      <nav class="tabs" aria-label={t('sections.label')}>
        {SECTIONS.map((s) => (
          <Link key={s} href={`/resources/${s}`} current={s === section} class={s === section ? 'tab active' : 'tab'}>
            {t(`sections.${s}`)}
          </Link>
        ))}
      </nav>
      {body}
    </section>
  );
}
