import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, withRoles } from '../config.ts';
import { createLogger } from '../logger.ts';
import { logRuntimeWarnings } from '../runtime-warnings.ts';
import { Pipeline } from '../serve.ts';
import { EXIT_FINDINGS, UsageError } from './common.ts';
import { SERVE_OPTIONS } from './options.ts';

export async function serveCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: SERVE_OPTIONS });
  const logger = createLogger({ sync: false });
  logRuntimeWarnings(logger);
  let pipeline: Pipeline;
  try {
    pipeline = new Pipeline(withRoles(loadConfig(values.config), values.roles), logger);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  // Handlers go in before start: "drover is serving" is logged inside start(), and a
  // signal sent on seeing it must not meet the default action (which kills).
  let started = false;
  let stopping = false;
  let resolveExit: (code: number) => void = () => {};
  const exit = new Promise<number>((resolve) => (resolveExit = resolve));
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping: draining, snapshotting, closing');
    // A stop that hangs (a broker that stopped answering, an adapter call that never
    // returns) must not keep the process up forever: past shutdownTimeout it exits,
    // non-zero, naming the step it was in. What was not snapshotted is replayed from the
    // bus at the next start, as after a crash.
    const { shutdownTimeoutMs } = pipeline.config;
    setTimeout(() => {
      logger.error(
        { step: pipeline.stopping, shutdownTimeoutMs },
        'stopping took longer than shutdownTimeout: exiting anyway',
      );
      logger.flush(() => process.exit(EXIT_FINDINGS));
    }, shutdownTimeoutMs).unref();
    pipeline.stop().then(
      () => resolveExit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        resolveExit(EXIT_FINDINGS);
      },
    );
  };
  const onTerm = () => stop('SIGTERM');
  const onInt = () => stop('SIGINT');
  const onHup = () => {
    if (started && !stopping)
      pipeline.reload().catch((err: unknown) => logger.error({ err }, 'rule reload failed'));
    else logger.warn('SIGHUP before start-up finished: the rules load at start anyway');
  };
  process.once('SIGTERM', onTerm);
  process.once('SIGINT', onInt);
  process.on('SIGHUP', onHup);
  try {
    await pipeline.start();
    started = true;
  } catch (err) {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    process.off('SIGHUP', onHup);
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  return exit;
}
