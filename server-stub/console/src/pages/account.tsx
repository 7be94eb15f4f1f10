import { Placeholder } from '../components/placeholder.js';
import type { PageProps } from '../router.js';

export default function AccountPage(_props: PageProps) {
  return <Placeholder ns="account" />;
}
