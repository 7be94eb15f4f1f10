import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderLifecycleDoc } from '../src/lifecycle/mermaid.js';

// Writes docs/agent-lifecycle.md from the transition tables. Run: npx tsx agent/scripts/generate-lifecycle.ts
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const target = join(root, 'docs', 'agent-lifecycle.md');
writeFileSync(target, renderLifecycleDoc());
console.log(`wrote ${target}`);
