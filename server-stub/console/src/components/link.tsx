import type { ComponentChildren } from 'preact';
import { navigate } from '../router.js';

/** An in-console link: a real <a href> (open in new tab works), navigated without a reload. */
export function Link(props: { href: string; class?: string; children: ComponentChildren; current?: boolean }) {
  const onClick = (e: MouseEvent) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(props.href);
  };
  return (
    <a href={props.href} class={props.class} onClick={onClick} aria-current={props.current ? 'page' : undefined}>
      {props.children}
    </a>
  );
}
