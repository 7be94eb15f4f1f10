import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TSchema } from '@sinclair/typebox';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { renderProtocolDoc, renderSchemaFiles, repoDir } from '../scripts/render.js';
import { MESSAGE_CATALOGUE, MESSAGE_TYPES, ProtocolErrorCodes } from '../src/index.js';
import { frameBytes, loadFixtures } from './helpers/fixtures.js';

const fixtures = loadFixtures();

describe('catalogue completeness', () => {
  it('has fixtures for every message type: at least one valid and two invalid', () => {
    for (const type of MESSAGE_TYPES) {
      const file = fixtures.get(type);
      expect(file, `fixtures for ${type}`).toBeDefined();
      expect(file!.valid?.length ?? 0, `valid ${type}`).toBeGreaterThanOrEqual(1);
      expect(
        file!.invalid.filter(
          (c) => c.expect === 'PROTO_SCHEMA_VIOLATION' || c.expect === 'PROTO_INVALID_ENVELOPE',
        ).length,
      ).toBeGreaterThanOrEqual(2);
    }
    for (const type of fixtures.keys()) if (type !== '_frame') expect(MESSAGE_TYPES).toContain(type);
  });

  it('documents every field of every message', () => {
    const missing: string[] = [];
    const walk = (schema: TSchema, path: string) => {
      const s = schema as Record<string, unknown>;
      if (!s.description) missing.push(path);
      for (const [k, v] of Object.entries((s.properties as Record<string, TSchema> | undefined) ?? {}))
        walk(v, `${path}/${k}`);
      if (s.items && (s.items as { type?: string }).type === 'object') walk(s.items as TSchema, `${path}/0`);
    };
    for (const type of MESSAGE_TYPES) walk(MESSAGE_CATALOGUE[type].body, `${type}:/body`);
    expect(missing).toEqual([]);
  });
});

describe('generated artifacts are up to date (run `npm run generate`)', () => {
  it('protocol/schema/*.json', () => {
    for (const [name, content] of Object.entries(renderSchemaFiles())) {
      expect(readFileSync(join(repoDir, 'protocol', 'schema', name), 'utf8'), name).toBe(content);
    }
  });
  it('docs/protocol.md', () => {
    const doc = readFileSync(join(repoDir, 'docs', 'protocol.md'), 'utf8');
    expect(doc).toBe(renderProtocolDoc());
    for (const type of MESSAGE_TYPES) expect(doc).toContain(`### ${type}\n`);
    for (const code of Object.keys(ProtocolErrorCodes)) expect(doc).toContain(`\`${code}\``);
  });
});

describe('the published JSON Schemas agree with decode (checked by an independent validator)', () => {
  const ajv = new Ajv2020({ strict: false, allErrors: false });
  const validators = new Map(
    Object.entries(renderSchemaFiles()).map(([name, text]) => [
      name.replace(/\.json$/, ''),
      ajv.compile(JSON.parse(text)),
    ]),
  );
  for (const [type, file] of fixtures) {
    if (type === '_frame') continue;
    it(type, () => {
      const validate = validators.get(type)!;
      for (const c of file.valid ?? [])
        expect(validate(JSON.parse(frameBytes(c).toString())), c.name).toBe(true);
      for (const c of file.invalid) {
        if (c.expect === 'PROTO_SCHEMA_VIOLATION' || c.expect === 'PROTO_INVALID_ENVELOPE') {
          expect(validate(JSON.parse(frameBytes(c).toString())), c.name).toBe(false);
        }
      }
    });
  }
});
