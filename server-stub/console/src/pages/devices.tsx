import { Placeholder } from '../components/placeholder.js';
import type { PageProps } from '../router.js';

export default function DevicesPage(_props: PageProps) {
  return <Placeholder ns="devices" />;
}
