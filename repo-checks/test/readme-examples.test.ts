import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The TypeScript examples of the READMEs are compiled against the packages as a user imports them
 * (`@router-fleet/*` resolved through node_modules to the built dist/), so an example cannot drift
 * from the API. A block is an example when it imports a `@router-fleet/` package; the other ```ts
 * blocks (server-stub/README.md) are signatures sketched with comments, not programs.
 */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const READMES = ['README.md', 'protocol/README.md', 'agent/README.md', 'simulator/README.md', 'server-stub/README.md', 'loadtest/README.md'];
const scratch = join(root, 'repo-checks', '.tmp', `readme-examples-${process.pid}`);

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Example {
  readonly readme: string;
  readonly line: number;
  readonly code: string;
}

function examples(): Example[] {
  const out: Example[] = [];
  for (const readme of READMES) {
    const lines = readFileSync(join(root, readme), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      if (!/^```(ts|typescript)\s*$/.test(lines[i]!)) continue;
      const start = i + 1;
      let end = start;
      while (end < lines.length && !lines[end]!.startsWith('```')) end++;
      const code = lines.slice(start, end).join('\n');
      if (/from '@router-fleet\//.test(code)) out.push({ readme, line: start + 1, code });
      i = end;
    }
  }
  return out;
}

/** Type-checks files as the repository's sources are checked (strict, NodeNext, no lib check skipped). */
function diagnostics(files: string[]): string[] {
  const base = ts.readConfigFile(join(root, 'tsconfig.base.json'), ts.sys.readFile.bind(ts.sys));
  const parsed = ts.parseJsonConfigFileContent(base.config, ts.sys, root);
  const options: ts.CompilerOptions = { ...parsed.options, noEmit: true, composite: false, declaration: false, declarationMap: false, sourceMap: false };
  const program = ts.createProgram(files, options);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file || d.start === undefined) return text;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    return `${relative(root, d.file.fileName)}:${line + 1}: ${text}`;
  });
}

describe('README examples', () => {
  it('finds the examples (an empty set would pass for nothing)', () => {
    expect(examples().length).toBeGreaterThanOrEqual(5);
  });

  it('compile against the built packages', () => {
    mkdirSync(scratch, { recursive: true });
    const files = examples().map((e, k) => {
      const file = join(scratch, `${e.readme.replace(/[/.]/g, '-')}-${e.line}.ts`);
      // `export {}` makes each block a module (top-level await, own scope) even without imports.
      writeFileSync(file, `${e.code}\nexport {};\n`);
      return { file, example: e, k };
    });
    const problems = diagnostics(files.map((f) => f.file));
    // Point at the README line rather than the scratch file.
    const where = (p: string) => {
      for (const f of files) {
        const rel = relative(root, f.file);
        if (p.startsWith(`${rel}:`)) {
          const line = Number(p.slice(rel.length + 1).split(':')[0]);
          return `${f.example.readme}:${f.example.line + line - 1}:${p.slice(rel.length + 1).split(':').slice(1).join(':')}`;
        }
      }
      return p;
    };
    expect(problems.map(where)).toEqual([]);
  }, 120_000);
});
