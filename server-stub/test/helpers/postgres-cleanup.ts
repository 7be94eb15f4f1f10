// A setup file of every test file (vitest.config.ts): drops the PostgreSQL database the file's
// tests made, if any. Kept apart from postgres.ts, which child processes of tests import too.
import { afterAll } from 'vitest';
import { dropTestDatabase } from './postgres.js';

afterAll(() => dropTestDatabase());
