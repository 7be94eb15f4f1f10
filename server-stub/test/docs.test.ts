import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configTableMarkdown } from '../src/config.js';
import { ServerErrors } from '../src/errors.js';

const read = (path: string) => readFileSync(new URL(path, import.meta.url), 'utf8');

describe('documentation agrees with the code', () => {
  it('docs/errors.md lists exactly the error catalogue, with the same HTTP statuses', () => {
    const doc = read('../../docs/errors.md');
    const rows = [...doc.matchAll(/^\| `(SERVER_[A-Z0-9_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
    const catalogue = Object.entries(ServerErrors).map(([code, e]) => [code, e.status]);
    expect(rows.sort()).toEqual(catalogue.sort());
  });

  it('server-stub/README.md carries the current configuration table', () => {
    expect(read('../README.md')).toContain(configTableMarkdown());
  });
});
