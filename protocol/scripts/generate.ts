/** Writes protocol/schema/*.json and docs/protocol.md. Run: `npm run generate` at the root. */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { protocolDir, renderProtocolDoc, renderSchemaFiles, repoDir } from './render.js';

const schemaDir = join(protocolDir, 'schema');
mkdirSync(schemaDir, { recursive: true });
const files = renderSchemaFiles();
for (const old of readdirSync(schemaDir)) if (!(old in files)) rmSync(join(schemaDir, old));
for (const [name, content] of Object.entries(files)) writeFileSync(join(schemaDir, name), content);
mkdirSync(join(repoDir, 'docs'), { recursive: true });
writeFileSync(join(repoDir, 'docs', 'protocol.md'), renderProtocolDoc());
console.log(`wrote ${Object.keys(files).length} schemas and docs/protocol.md`);
