import pino, { type Logger } from 'pino';
import { redact } from './redact.ts';

/**
 * Drover's own logs: pino, JSON, one object per line, on stderr so stdout stays free
 * for command output, with credentials redacted. `DROVER_LOG_LEVEL` sets the level (default info; `silent` off).
 */
export function createLogger(
  options: { level?: string; name?: string; sync?: boolean } = {},
): Logger {
  return pino(
    {
      name: options.name ?? 'drover',
      level: options.level ?? process.env.DROVER_LOG_LEVEL ?? 'info',
      base: { 'service.name': 'drover', pid: process.pid },
      // Every line, whatever put a URL or a header in it (an error's message, a client's
      // metadata), loses its credentials here, on its way out.
      hooks: { streamWrite: redact },
    },
    // Commands log rarely and may exit right after: synchronous unless asked otherwise.
    pino.destination({ fd: 2, sync: options.sync ?? true }),
  );
}

export type { Logger };
