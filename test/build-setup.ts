import { ensureBuilt } from './support/build.ts';

/**
 * The unit project's setup: no servers, only the compiled CLI that the command-line
 * tests spawn (bin/drover.js runs dist/), rebuilt when stale.
 */
export function setup() {
  ensureBuilt();
}
