/**
 * A file field whose button and "no file chosen" text are the page's. The browser's own file input
 * speaks the browser's language whatever the console's, so it stays in the form (it holds the file
 * and opens the dialog) but is hidden behind a label in the console's language.
 */
import { useEffect, useRef } from 'preact/hooks';
import { useT } from '../i18n.js';
import '../styles/resources.css';

export function FilePicker(props: {
  /** The field's caption above the button; without one, `ariaLabel` names the input. */
  caption?: string;
  ariaLabel?: string;
  name?: string;
  accept?: string;
  required?: boolean;
  file: File | null;
  onChange: (file: File | null) => void;
}) {
  const t = useT('common');
  const input = useRef<HTMLInputElement>(null);
  // The form let go of its file (e.g. after an upload): the hidden input lets go too, or choosing
  // the same file again would be no change and never reach the form.
  useEffect(() => {
    if (props.file === null && input.current) input.current.value = '';
  }, [props.file]);
  const picker = (
    <label class="file-picker" data-testid="file-picker">
      <input
        ref={input}
        type="file"
        name={props.name}
        accept={props.accept}
        required={props.required}
        aria-label={props.ariaLabel ?? props.caption}
        onChange={(e) => props.onChange(e.currentTarget.files?.[0] ?? null)}
      />
      <span class="button secondary" data-testid="file-choose">
        {t('file.choose')}
      </span>
      <span class="file-name" data-testid="file-name">
        {props.file ? props.file.name : t('file.none')}
      </span>
    </label>
  );
  if (props.caption === undefined) return picker;
  return (
    <div class="file-field">
      <span>{props.caption}</span>
      {picker}
    </div>
  );
}
