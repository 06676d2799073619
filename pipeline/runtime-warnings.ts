import type { Logger } from './logger.ts';

/**
 * Node.js writes a process warning to stderr as free text ("(node:PID) Warning: ..."):
 * in `drover serve`, whose stderr is JSON lines for a log shipper, that is one line no
 * parser reads. Serve routes warnings into its log instead, one object each at level warn
 * with the warning's name, code and message (`runtimeWarning`), replacing Node's own
 * printer. Warnings come from the runtime and the libraries, not from events: what
 * bounds them is the code's call sites (Node prints most kinds once per process).
 *
 * One to look for: a TimeoutNegativeWarning (Node.js 23 and later) from kafkajs means
 * its request queue's idle timer loop is back, which ingest/bus/kafkajs.ts replaces
 * when the method is the one it knows (a kafkajs that changed it is not patched).
 */
export function logRuntimeWarnings(logger: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    logger.warn(
      { runtimeWarning: { name: warning.name, code: warning.code, message: warning.message } },
      'runtime warning',
    );
  });
}
