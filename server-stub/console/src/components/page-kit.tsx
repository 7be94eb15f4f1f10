/** What pages with lists and forms share: loading, change messages, roles, files, sizes. */
import type { TFunction } from 'i18next';
import type { ComponentChildren } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { errorText, type FieldNames } from './error-text.js';
import type { Role } from '../api.js';
import { currentLanguage } from '../i18n.js';
import { useSession } from '../session.js';

/**
 * A message after a change. Its text is a function, called when it renders: switching the
 * language translates a message that is already on screen too.
 */
export type Message = { kind: 'success' | 'error'; text: () => string } | null;

/** Data of a section: loaded on mount and on `reload()`; a failed load is a translated message. */
export function useLoad<T>(t: TFunction, load: () => Promise<T>, deps: readonly unknown[] = []) {
  const [data, setData] = useState<T | null>(null);
  const [failure, setFailure] = useState<{ err: unknown } | null>(null);
  // Loads may overlap (a change reloads while the mount's load is under way): only the newest answers.
  const generation = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++generation.current;
    try {
      const result = await load();
      if (mine !== generation.current) return;
      setData(result);
      setFailure(null);
    } catch (err) {
      if (mine !== generation.current) return;
      setFailure({ err });
    }
  }, deps);
  useEffect(() => {
    void reload();
  }, [reload]);
  return { data, error: failure ? errorText(t, failure.err) : null, reload };
}

/**
 * Runs a change: busy while it runs, then a success or translated error message, then `after`.
 * With `fields`, a refused input names the field and the rule it breaks.
 */
export function useAction(t: TFunction, after: () => Promise<void> | void = () => undefined, fields?: FieldNames) {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<Message>(null);
  /** `action` resolves to its success message (a function, translated when it renders). */
  const run = async (action: () => Promise<() => string>): Promise<boolean> => {
    setBusy(true);
    setMessage(null);
    let ok = false;
    try {
      setMessage({ kind: 'success', text: await action() });
      ok = true;
    } catch (err) {
      setMessage({ kind: 'error', text: () => errorText(t, err, fields) });
    } finally {
      await after();
      setBusy(false);
    }
    return ok;
  };
  return { busy, message, setMessage, run };
}

/**
 * A form's row of actions: any other buttons (`children`), then its primary submit button, which
 * is disabled while the change runs.
 */
export function SubmitRow(props: { busy: boolean; label: string; testid?: string; class?: string; children?: ComponentChildren }) {
  return (
    <div class={props.class ?? 'form-actions'}>
      {props.children}
      <button type="submit" class="primary" disabled={props.busy} data-testid={props.testid}>
        {props.label}
      </button>
    </div>
  );
}

export function MessageLine(props: { message: Message; testid: string }) {
  const m = props.message;
  if (!m) return null;
  return (
    <p class={m.kind} role={m.kind === 'error' ? 'alert' : 'status'} data-testid={props.testid}>
      {m.text()}
    </p>
  );
}

export function LoadError(props: { text: string | null }) {
  return props.text ? (
    <p class="error" role="alert">
      {props.text}
    </p>
  ) : null;
}

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

/** Whether the logged-in user's role is at least `role` (the server checks again). */
export function useCan(role: Role): boolean {
  return RANK[useSession().user.role] >= RANK[role];
}

/** A file's bytes as base64 (for JSON bodies such as a packet build). */
export async function fileBase64(file: Blob): Promise<string> {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = '';
  // In slices: String.fromCharCode with one argument per byte overflows the stack on large files.
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** Bytes in the console's units (B, KiB, MiB, GiB). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const number = new Intl.NumberFormat(currentLanguage() === 'de' ? 'de-DE' : 'en-GB', { maximumFractionDigits: u === 0 ? 0 : 1 });
  return `${number.format(v)} ${units[u]}`;
}

/** The first characters of a hash, with the whole hash as the element's title. */
export function ShortHash(props: { value: string }) {
  return (
    <code title={props.value} class="hash">
      {props.value.slice(0, 12)}
      …
    </code>
  );
}
