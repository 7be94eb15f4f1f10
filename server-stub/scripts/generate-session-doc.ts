import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderSessionDoc } from '../src/channel/session-doc.js';

// Writes docs/channel-session.md from the session table. Run: npx tsx server-stub/scripts/generate-session-doc.ts
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const target = join(root, 'docs', 'channel-session.md');
writeFileSync(target, renderSessionDoc());
console.log(`wrote ${target}`);
