/**
 * The Kafka a benchmark runs against: KAFKA_BROKERS's, or a single-node one started as
 * the tests start it (`stopKafka` stops it; absent for one of the caller's).
 */
export async function kafkaForBench(
  name: string,
  log: (s: string) => void,
): Promise<{ brokersText: string; stopKafka?: () => Promise<void> }> {
  const given = process.env.KAFKA_BROKERS;
  if (given) return { brokersText: given };
  log(`${name}: KAFKA_BROKERS is not set: starting a single-node Kafka as the tests do`);
  const kafka = await (await import('../test/servers/kafka.ts')).startKafka();
  return { brokersText: kafka.url, stopKafka: () => kafka.stop() };
}
