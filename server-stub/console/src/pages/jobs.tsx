import { Placeholder } from '../components/placeholder.js';
import type { PageProps } from '../router.js';

export default function JobsPage(_props: PageProps) {
  return <Placeholder ns="jobs" />;
}
