/**
 * The flags each command's parser accepts, in one light module: the command reads its
 * arguments with them, and the CLI's help and docs/cli.md are checked against them (a flag
 * the parser takes and the usage text does not name is a failing test), without loading the
 * command itself.
 */
import type { ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

export const LINT_OPTIONS = {
  format: { type: 'string', default: 'text' },
} satisfies Options;

export const TEST_OPTIONS = {
  format: { type: 'string', default: 'text' },
} satisfies Options;

export const IMPORT_OPTIONS = {
  out: { type: 'string' },
} satisfies Options;

export const RELOAD_OPTIONS = {
  url: { type: 'string' },
  config: { type: 'string' },
  'state-dir': { type: 'string' },
} satisfies Options;

/** Where backtest and rules diff read events (pipeline/commands/backtest-source.ts). */
const SOURCE_OPTIONS = {
  data: { type: 'string' },
  source: { type: 'string' },
  index: { type: 'string' },
  topic: { type: 'string' },
  warmup: { type: 'string' },
} satisfies Options;

export const BACKTEST_OPTIONS = {
  rules: { type: 'string', multiple: true },
  ...SOURCE_OPTIONS,
  config: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  format: { type: 'string', default: 'text' },
  lateness: { type: 'string' },
  states: { type: 'boolean', default: false },
} satisfies Options;

export const DIFF_OPTIONS = {
  base: { type: 'string' },
  head: { type: 'string' },
  ...SOURCE_OPTIONS,
  from: { type: 'string' },
  to: { type: 'string' },
  format: { type: 'string', default: 'text' },
  config: { type: 'string' },
  lateness: { type: 'string' },
} satisfies Options;

export const DEMO_OPTIONS = {
  'keep-running': { type: 'boolean', default: false },
} satisfies Options;

export const SERVE_OPTIONS = {
  config: { type: 'string' },
  roles: { type: 'string' },
} satisfies Options;

export const ACTIONS_LIST_OPTIONS = {
  since: { type: 'string' },
  rule: { type: 'string' },
  format: { type: 'string', default: 'text' },
  limit: { type: 'string', default: '100' },
  db: { type: 'string' },
  config: { type: 'string' },
} satisfies Options;

export const KILL_SWITCH_OPTIONS = {
  db: { type: 'string' },
  config: { type: 'string' },
} satisfies Options;

export const SILENCE_OPTIONS = {
  db: { type: 'string' },
  url: { type: 'string' },
  config: { type: 'string' },
  'state-dir': { type: 'string' },
  for: { type: 'string' },
  until: { type: 'string' },
  comment: { type: 'string' },
  'expire-on-resolve': { type: 'boolean', default: false },
  format: { type: 'string', default: 'text' },
} satisfies Options;

export const EXPLAIN_OPTIONS = {
  format: { type: 'string', default: 'text' },
  db: { type: 'string' },
  config: { type: 'string' },
} satisfies Options;
