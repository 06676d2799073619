import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from '../config.ts';
import { createLogger } from '../logger.ts';
import { Pipeline } from '../serve.ts';
import { EXIT_FINDINGS, UsageError } from './common.ts';

export async function serveCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const logger = createLogger({ sync: false });
  let pipeline: Pipeline;
  try {
    pipeline = new Pipeline(loadConfig(values.config), logger);
    await pipeline.start();
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping: draining, snapshotting, closing');
      pipeline.stop().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          resolve(EXIT_FINDINGS);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => void pipeline.reload());
  });
}
