import { parseArgs } from 'node:util';
import { runDemo } from '../demo.ts';
import { createLogger } from '../logger.ts';
import { DEMO_OPTIONS } from './options.ts';

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: DEMO_OPTIONS,
  });
  // Drover's own logs would drown the timeline: only warnings and worse, on stderr.
  const logger = createLogger({ level: process.env.DROVER_LOG_LEVEL ?? 'warn', sync: false });
  return runDemo({ keepRunning: values['keep-running'] === true, out: process.stdout, logger });
}
