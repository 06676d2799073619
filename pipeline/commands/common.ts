import type { ParseArgsConfig } from 'node:util';

/** Exit codes: 0 ok, 1 findings or failures, 2 usage errors. */
export const EXIT_OK = 0;
export const EXIT_FINDINGS = 1;
export const EXIT_USAGE = 2;

export class UsageError extends Error {}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** The flags the command's parser accepts; each is named in `usage` (tested). */
  options: NonNullable<ParseArgsConfig['options']>;
  run(args: string[]): Promise<number>;
}
