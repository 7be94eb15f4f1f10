/**
 * A strict reader of the Prometheus text exposition format (version 0.0.4), enough to check that
 * what /metrics serves is well formed and to read samples from it.
 */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  readonly samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(text: string, line: string): number {
  if (/^[+-]?inf$/i.test(text)) return text.startsWith('-') ? -Infinity : Infinity;
  if (/^nan$/i.test(text)) return Number.NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`bad value in: ${line}`);
  return Number(text);
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest.length > 0) {
    const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)/.exec(rest);
    if (!m) throw new Error(`bad labels in: ${line}`);
    const [all, name, raw] = m;
    if (name! in labels) throw new Error(`label ${name} twice in: ${line}`);
    labels[name!] = raw!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    rest = rest.slice(all.length);
  }
  return labels;
}

/** The family a sample belongs to (`x_bucket`, `x_sum`, `x_count` belong to histogram/summary `x`). */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(name);
  if (direct) return direct;
  const m = /^(.*)_(bucket|sum|count)$/.exec(name);
  const f = m ? families.get(m[1]!) : undefined;
  if (f && (f.type === 'histogram' || (f.type === 'summary' && m![2] !== 'bucket'))) return f;
  return undefined;
}

/**
 * Parses the text and throws on anything malformed: a sample before its family's TYPE, a family
 * without HELP, a TYPE or HELP twice, bad names, labels or values, histogram buckets that are not
 * cumulative or lack `+Inf`, or `_count` different from the `+Inf` bucket.
 */
export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const helps = new Map<string, string>();
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (!m) {
        if (/^# (HELP|TYPE) /.test(line)) throw new Error(`bad comment line: ${line}`);
        continue;
      }
      const [, kind, name, rest] = m;
      if (!NAME.test(name!)) throw new Error(`bad metric name: ${line}`);
      if (kind === 'HELP') {
        if (helps.has(name!)) throw new Error(`HELP twice for ${name}`);
        if (rest!.trim() === '') throw new Error(`empty HELP for ${name}`);
        helps.set(name!, rest!);
      } else {
        if (families.has(name!)) throw new Error(`TYPE twice for ${name}`);
        if (!TYPES.has(rest!)) throw new Error(`bad TYPE: ${line}`);
        families.set(name!, { name: name!, help: '', type: rest as Family['type'], samples: [] });
      }
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const [, name, , labelText, valueText] = m;
    const family = familyOf(name!, families);
    if (!family) throw new Error(`sample before (or without) its TYPE: ${line}`);
    const labels = labelText ? parseLabels(labelText, line) : {};
    for (const l of Object.keys(labels)) if (!LABEL.test(l)) throw new Error(`bad label name: ${line}`);
    family.samples.push({ name: name!, labels, value: parseValue(valueText!, line) });
  }
  for (const [name, f] of families) {
    const help = helps.get(name);
    if (help === undefined) throw new Error(`no HELP for ${name}`);
    (f as { help: string }).help = help;
    if (f.type === 'histogram') checkHistogram(f);
  }
  for (const name of helps.keys()) if (!families.has(name)) throw new Error(`HELP without TYPE for ${name}`);
  return families;
}

function checkHistogram(f: Family): void {
  const series = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}_bucket without le`);
      entry.buckets.push([parseValue(le, `le of ${f.name}`), s.value]);
    } else if (s.name === `${f.name}_count`) entry.count = s.value;
    else if (s.name === `${f.name}_sum`) entry.sum = s.value;
    else throw new Error(`unexpected sample ${s.name} in histogram ${f.name}`);
  }
  for (const [key, e] of series) {
    const last = e.buckets.at(-1);
    if (!last || last[0] !== Infinity) throw new Error(`${f.name}${key}: no +Inf bucket`);
    for (let i = 1; i < e.buckets.length; i++) {
      if (e.buckets[i]![0] <= e.buckets[i - 1]![0] || e.buckets[i]![1] < e.buckets[i - 1]![1]) {
        throw new Error(`${f.name}${key}: buckets not increasing and cumulative`);
      }
    }
    if (e.count !== last[1] || e.sum === undefined) throw new Error(`${f.name}${key}: _count or _sum wrong or missing`);
  }
}

/** The value of the one sample `name` with exactly `labels` (undefined when there is none). */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const f = familyOf(name, families);
  const want = JSON.stringify(Object.entries(labels).sort());
  return f?.samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want)?.value;
}
