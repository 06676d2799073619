import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The layers (docs/architecture.md#layers): files under a key may import, by relative
// path, only files under the key itself or under the folders (or files) it lists.
// Folders that are not keys (pipeline/, bench/, test/, examples/) may import anything;
// packages (node:*, npm) are not restricted here.
/** folder → what it may import besides itself. */
const LAYERS = {
  // Ground floor: the event model imports nothing of Drover's.
  'ingest/model': [],
  // How the embedded stores open SQLite: nothing of Drover's either.
  'ingest/storage': [],
  // The units sources and sinks plug into.
  'ingest/bus': ['ingest/model', 'ingest/storage'],
  'ingest/index': ['ingest/model'],
  // Sources publish onto the bus (and answer searches); sinks consume it into the index.
  'ingest/sources': ['ingest/model', 'ingest/storage', 'ingest/bus', 'ingest/index'],
  'ingest/sinks': ['ingest/model', 'ingest/storage', 'ingest/bus', 'ingest/index'],
  // The wings above ingest: rules see only events; actions see events, alerts (rules)
  // and the index templates their Elasticsearch journal shares with the indexer.
  rules: ['ingest/model'],
  actions: ['ingest/model', 'ingest/storage', 'ingest/index/templates.ts', 'rules'],
  dashboards: ['ingest/model', 'ingest/index'],
};

const MAX_DEPTH = 6;
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/**
 * One block per folder depth under each key: a file `depth` folders deep that climbs k
 * folders (`../` k times) lands at a known ancestor, so the allowed targets can be
 * spelled relative to it. Climbing no higher than the key stays inside the key: allowed.
 */
function layerBlocks() {
  const blocks = [];
  for (const [key, allowed] of Object.entries(LAYERS)) {
    const keyParts = key.split('/');
    for (let extra = 0; extra < MAX_DEPTH; extra++) {
      const depth = keyParts.length + extra; // folders above the file
      const patterns = [];
      for (let up = extra + 1; up <= depth; up++) {
        const base = keyParts.slice(0, depth - up); // the ancestor `up` climbs reach
        const prefix = base.length ? `${base.join('/')}/` : '';
        const ok = [key, ...allowed]
          .filter((a) => a.startsWith(prefix))
          .map((a) => esc(a.slice(prefix.length)) + (a.endsWith('.ts') ? '$' : '(?:/|$)'));
        const climb = `(?:\\.\\./){${up}}`;
        patterns.push({
          regex: `^${climb}(?!\\.\\./)${ok.length ? `(?!${ok.join('|')})` : ''}`,
          message: `${key}/ may import only ${[key, ...allowed].join(', ')} (the layer map in eslint.config.js).`,
        });
      }
      blocks.push({
        files: [`${key}/${'*/'.repeat(extra)}*.{ts,mts,cts,js,mjs}`],
        rules: { 'no-restricted-imports': ['error', { patterns }] },
      });
    }
  }
  return blocks;
}

export default tseslint.config(
  { ignores: ['node_modules/', 'coverage/', '.drover/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: {
        process: 'readonly',
        console: 'readonly',
        Buffer: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        fetch: 'readonly',
        performance: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-explicit-any': 'warn',
      'no-constant-condition': ['error', { checkLoops: false }],
      // `async` is how Promise-returning contracts (Bus handlers, adapters, stores, Fastify
      // routes) are met here, and it turns a throw into the rejection callers expect.
      '@typescript-eslint/require-await': 'off',
      // Event fields are hostile JSON typed `unknown`: String() is their defined coercion
      // (an object becomes "[object Object]" on purpose, as in the reference normalizer).
      '@typescript-eslint/no-base-to-string': 'off',
    },
  },
  {
    // vitest's asymmetric matchers (expect.stringMatching, expect.any) are typed `any`.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-unsafe-assignment': 'off' },
  },
  // Plain JavaScript (this file, bin/, fixtures, the demo app) is outside the TypeScript project.
  { files: ['**/*.js', '**/*.mjs', '**/*.cjs'], ...tseslint.configs.disableTypeChecked },
  ...layerBlocks(),
);
