/**
 * The mechanical part of turning a statement written in SQLite's form into PostgreSQL's: `?`
 * placeholders become `$1`, `$2`, … (`? IS NULL`, an optional filter, becomes `$1::text IS NULL`:
 * PostgreSQL must know a parameter's type, and whether a value is NULL does not depend on it), and
 * SQLite's null-safe `a IS b` / `a IS NOT b` become `IS NOT DISTINCT FROM` / `IS DISTINCT FROM`
 * (`IS NULL`, `IS NOT NULL`, `IS TRUE` stay). Quoted
 * text, quoted names and comments are left alone. Anything else that differs is written out per
 * dialect next to the SQLite form (`dialects()` in store/database.ts), never guessed here.
 */
export function toPostgres(sql: string): string {
  let out = '';
  let n = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    if (c === '\'' || c === '"') {
      const end = closing(sql, i, c);
      out += sql.slice(i, end);
      i = end;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      const stop = end < 0 ? sql.length : end;
      out += sql.slice(i, stop);
      i = stop;
    } else if (c === '?') {
      out += /^\s+IS\s+(NOT\s+)?NULL\b/i.test(sql.slice(i + 1, i + 20)) ? `$${++n}::text` : `$${++n}`;
      i++;
    } else {
      // Copy up to the next character that needs a look.
      let j = i + 1;
      while (j < sql.length && !'\'"-?'.includes(sql[j]!)) j++;
      out += nullSafe(sql.slice(i, j));
      i = j;
    }
  }
  return out;
}

/** Index just past the quoted run starting at `start` (a doubled quote is part of it). */
function closing(sql: string, start: number, quote: string): number {
  let i = start + 1;
  for (;;) {
    const j = sql.indexOf(quote, i);
    if (j < 0) return sql.length;
    if (sql[j + 1] === quote) i = j + 2;
    else return j + 1;
  }
}

function nullSafe(text: string): string {
  return text
    .replace(/\bIS NOT (?!NULL\b|TRUE\b|FALSE\b|DISTINCT\b)/g, 'IS DISTINCT FROM ')
    .replace(/\bIS (?!NOT\b|NULL\b|TRUE\b|FALSE\b|DISTINCT\b)/g, 'IS NOT DISTINCT FROM ');
}
