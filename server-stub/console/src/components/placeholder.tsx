import type { Namespace } from '../i18n.js';
import { useT } from '../i18n.js';

/** A page that is not built yet: its title and a notice, both translated. */
export function Placeholder(props: { ns: Namespace }) {
  const t = useT(props.ns);
  const common = useT('common');
  return (
    <section class="page">
      <h1>{t('title')}</h1>
      <p class="notice">{common('placeholder')}</p>
    </section>
  );
}
