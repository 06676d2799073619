import pino, { type Logger } from 'pino';

/**
 * Drover's own logs: pino, JSON, one object per line, on stderr so stdout stays free
 * for command output. `DROVER_LOG_LEVEL` sets the level (default info; `silent` off).
 */
export function createLogger(
  options: { level?: string; name?: string; sync?: boolean } = {},
): Logger {
  return pino(
    {
      name: options.name ?? 'drover',
      level: options.level ?? process.env.DROVER_LOG_LEVEL ?? 'info',
      base: { 'service.name': 'drover', pid: process.pid },
    },
    // Commands log rarely and may exit right after: synchronous unless asked otherwise.
    pino.destination({ fd: 2, sync: options.sync ?? true }),
  );
}

export type { Logger };
