/**
 * `npm run bench -- NAME [--json]`: Drover's benchmarks. Each compares against its
 * baseline in the same run, since this kind of machine is shared and noisy.
 */
const BENCHMARKS: Record<string, () => Promise<(args: string[]) => Promise<number>>> = {
  'hot-path': async () => (await import('./hot-path.ts')).hotPath,
  ingest: async () => (await import('./ingest.ts')).ingest,
  'kafka-publish': async () => (await import('./kafka-publish.ts')).kafkaPublish,
  lz4: async () => (await import('./lz4.ts')).lz4Bench,
  e2e: async () => (await import('./e2e.ts')).e2e,
  runtimes: async () => (await import('./runtimes.ts')).runtimesBench,
  startup: async () => (await import('./startup.ts')).startup,
  backtest: async () => (await import('./backtest.ts')).backtestBench,
  'rules-consumer': async () => (await import('./rules-consumer.ts')).rulesConsumer,
  soak: async () => (await import('./soak.ts')).soak,
  snapshot: async () => (await import('./snapshot.ts')).snapshotBench,
  scale: async () => (await import('./scale.ts')).scaleBench,
  'worker-idle': async () => (await import('./worker-idle.ts')).workerIdle,
  'bus-retention': async () => (await import('./bus-retention.ts')).busRetention,
  'store-open': async () => (await import('./store-open.ts')).storeOpen,
};

const [name, ...args] = process.argv.slice(2);
const load = name === undefined ? undefined : BENCHMARKS[name];
if (!load) {
  process.stderr.write(`usage: npm run bench -- ${Object.keys(BENCHMARKS).join('|')} [--json]\n`);
  process.exit(2);
}
process.exitCode = await (await load())(args);
