/**
 * A day typed in the console's language's pattern (see day-input.ts), with that pattern as its
 * placeholder and a translated error once the text is left invalid or outside [min, max].
 */
import { useId, useState } from 'preact/hooks';
import { dayText, parseDay } from '../day-input.js';
import { currentLanguage, useT } from '../i18n.js';

/** Whether `text` is a day within [min, max] (both `YYYY-MM-DD`, optional): the day, or why not. */
export function checkDay(text: string, min?: string, max?: string): { day: string } | { problem: 'invalid' | 'range' } {
  const day = parseDay(text);
  if (day === null) return { problem: 'invalid' };
  if ((min !== undefined && day < min) || (max !== undefined && day > max)) return { problem: 'range' };
  return { day };
}

export function DateField(props: {
  value: string;
  onInput: (text: string) => void;
  ariaLabel: string;
  min?: string;
  max?: string;
  testid?: string;
}) {
  const t = useT('common');
  const [left, setLeft] = useState(false);
  const errorId = useId();
  const lang = currentLanguage();
  const check = props.value.trim() === '' ? null : checkDay(props.value, props.min, props.max);
  const problem = left && check && 'problem' in check ? check.problem : null;
  return (
    <span class={`date-field${problem ? ' invalid' : ''}`}>
      <input
        type="text"
        inputMode="numeric"
        autoComplete="off"
        size={10}
        aria-label={props.ariaLabel}
        aria-invalid={problem ? 'true' : undefined}
        aria-describedby={problem ? errorId : undefined}
        data-testid={props.testid}
        placeholder={t('date.placeholder')}
        value={props.value}
        onInput={(e) => {
          setLeft(false);
          props.onInput(e.currentTarget.value);
        }}
        onBlur={() => setLeft(true)}
      />
      {problem ? (
        <span id={errorId} class="error" role="alert" data-testid={props.testid ? `${props.testid}-error` : undefined}>
          {problem === 'invalid'
            ? t('date.invalid', { pattern: t('date.placeholder') })
            : t('date.range', { min: props.min ? dayText(props.min, lang) : '', max: props.max ? dayText(props.max, lang) : '' })}
        </span>
      ) : null}
    </span>
  );
}
