import type { Logger } from './logger.ts';

/**
 * Node.js writes a process warning to stderr as free text ("(node:PID) Warning: ..."):
 * in `drover serve`, whose stderr is JSON lines for a log shipper, that is one line no
 * parser reads. Serve routes warnings into its log instead, one object each at level warn
 * with the warning's name, code and message (`runtimeWarning`), replacing Node's own
 * printer. Warnings come from the runtime and the libraries, not from events: what
 * bounds them is the code's call sites (Node prints most kinds once per process).
 *
 * One is known and harmless: from Node.js 23 on, `setTimeout` with a negative delay warns
 * (TimeoutNegativeWarning) and runs after 1 ms, as earlier versions did silently, and
 * kafkajs's request queue asks for one whenever it schedules a check with nothing
 * throttled. That one is logged at debug.
 */
export function logRuntimeWarnings(logger: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    const fields = {
      runtimeWarning: { name: warning.name, code: warning.code, message: warning.message },
    };
    if (warning.name === 'TimeoutNegativeWarning') logger.debug(fields, 'runtime warning');
    else logger.warn(fields, 'runtime warning');
  });
}
