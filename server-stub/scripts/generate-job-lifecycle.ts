import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderJobLifecycleDoc } from '../src/jobs/job-lifecycle.js';

// Writes docs/job-lifecycle.md from the job lifecycle table. Run: npm run generate -w server-stub
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const target = join(root, 'docs', 'job-lifecycle.md');
writeFileSync(target, renderJobLifecycleDoc());
console.log(`wrote ${target}`);
