// The one lint/format tool: ESLint with typescript-eslint (lint) and @stylistic (format rules).
// `npm run lint` checks, `npm run format` fixes. (Biome was tried first; its platform binaries are
// not all served by every npm registry mirror, which breaks `npm ci` on a fresh machine.)
import js from '@eslint/js';
import stylistic from '@stylistic/eslint-plugin';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['**/dist/**', '**/dist-bundle/**', '**/node_modules/**', '**/coverage/**', '**/.tmp/**', 'protocol/schema/**'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  stylistic.configs.customize({ indent: 2, quotes: 'single', semi: true, braceStyle: '1tbs', arrowParens: true }),
  {
    languageOptions: {
      globals: { console: 'readonly', process: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', performance: 'readonly', TextDecoder: 'readonly', TextEncoder: 'readonly', AbortController: 'readonly', AbortSignal: 'readonly', queueMicrotask: 'readonly', structuredClone: 'readonly', fetch: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@stylistic/max-len': ['error', { code: 160, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true, ignoreComments: false, ignoreUrls: true }],
      '@stylistic/operator-linebreak': ['error', 'before', { overrides: { '=': 'after' } }],
      '@stylistic/multiline-ternary': 'off',
      '@stylistic/quote-props': ['error', 'as-needed'],
      'no-restricted-imports': ['error', { patterns: ['../../*/src/*'] }],
    },
  },
  {
    // Node's global `Buffer` is a getter: optimised code calls it on every use (about 100
    // instructions on the codec's path). The library code imports it, as Node's documentation asks.
    files: ['*/src/**/*.ts'],
    rules: {
      'no-restricted-globals': ['error', { name: 'Buffer', message: 'import { Buffer } from \'node:buffer\' (the global is a getter).' }],
    },
  },
  {
    // The console bundles the few server modules that import nothing (shared descriptions such as
    // the CSV import columns), listed one by one; any other server module stays out of the browser.
    files: ['server-stub/console/src/**'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['../../*/src/*', '!../../../src/import-columns.js'] }],
    },
  },
  {
    // The bundle's CommonJS shims (agent/scripts/bundle-shims/*.cjs): dependencies that call
    // `require('x')(…)` need a module whose exports are the function itself.
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The console's tests may read the console's own pure modules (its package is server-stub).
    files: ['server-stub/test/console/**'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['../../*/src/*', '!../../console/src/day-input.js'] }],
    },
  },
);
