import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const dir = (path: string) => new URL(path, import.meta.url);
const sources = (path: string) =>
  readdirSync(dir(path))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => ({ file: f, text: readFileSync(dir(`${path}/${f}`), 'utf8') }));

describe('layering', () => {
  it('route handlers reach the store only through account-scoped repositories and ports', () => {
    const offenders = sources('../src/routes/').filter((s) => /services\.store\b|\.stmt\s*[<(]/.test(s.text));
    expect(offenders.map((s) => s.file)).toEqual([]);
  });

  it('the control channel holds no SQL (its reads and writes are in store/channel.ts)', () => {
    const sql = /\.stmt\s*[<(]|\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b/;
    const offenders = [...sources('../src/channel/'), ...sources('../src/channel/mqtt/')].filter((s) => sql.test(s.text));
    expect(offenders.map((s) => s.file)).toEqual([]);
  });

  it('the channel pieces are given narrow dependencies, never the whole Services bag', () => {
    const offenders = [...sources('../src/channel/'), ...sources('../src/channel/mqtt/')].filter((s) => /\bServices\b/.test(s.text));
    expect(offenders.map((s) => s.file)).toEqual([]);
  });
});
