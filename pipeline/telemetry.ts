import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry, Summary } from 'prom-client';

/**
 * Drover's own metrics (docs/architecture.md#drovers-own-telemetry), all `drover_*`, each
 * with help text and label sets bounded by configuration (protocols, rules, adapters,
 * guards), never by data.
 */
export function createTelemetry() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const m = {
    registry,
    ingestEvents: new Counter({
      name: 'drover_ingest_events_total',
      help: 'Events accepted by ingest, by protocol.',
      labelNames: ['protocol'],
      registers: [registry],
    }),
    ingestBytes: new Counter({
      name: 'drover_ingest_bytes_total',
      help: 'Bytes received by ingest (after decompression), by protocol.',
      labelNames: ['protocol'],
      registers: [registry],
    }),
    decodeErrors: new Counter({
      name: 'drover_ingest_decode_errors_total',
      help: 'Lines, items or records ingest could not decode or normalize, by protocol.',
      labelNames: ['protocol'],
      registers: [registry],
    }),
    throttled: new Counter({
      name: 'drover_ingest_throttled_total',
      help: 'Requests answered 429 (or datagrams dropped) because the bus pushed back, by protocol.',
      labelNames: ['protocol'],
      registers: [registry],
    }),
    statsdEvicted: new Counter({
      name: 'drover_statsd_gauges_evicted_total',
      help: 'statsd gauge series forgotten because 10,000 newer ones were set since (a delta on one starts again from 0).',
      registers: [registry],
    }),
    busLag: new Gauge({
      name: 'drover_bus_lag_messages',
      help: 'Messages a consumer group has yet to process, by group and topic.',
      labelNames: ['group', 'topic'],
      registers: [registry],
    }),
    busCorruptBatches: new Counter({
      name: 'drover_bus_corrupt_batches_total',
      help: 'Kafka record batches still corrupt when fetched again (a CRC-32C mismatch, an undecodable batch), stopped at or skipped (bus.corruptBatch), or that stopped a rules restore (topic rules-state or rules-global-state), once per batch and consumer group, by group, topic and partition.',
      labelNames: ['group', 'topic', 'partition'],
      registers: [registry],
    }),
    busStoppedPartitions: new Gauge({
      name: 'drover_bus_stopped_partitions',
      help: 'Partitions a consumer group of this process stopped consuming at a corrupt record batch (bus.corruptBatch: stop), or changelog partitions (rules-state, rules-global-state) whose corrupt batch stopped a rules restore: 1 while stopped, by group, topic and partition.',
      labelNames: ['group', 'topic', 'partition'],
      registers: [registry],
    }),
    indexLatency: new Histogram({
      name: 'drover_index_batch_seconds',
      help: 'Time to index one bus batch.',
      buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    indexed: new Counter({
      name: 'drover_index_documents_total',
      help: 'Documents indexed.',
      registers: [registry],
    }),
    indexFailures: new Counter({
      name: 'drover_index_failures_total',
      help: 'Documents sent to the dead-letter index, and failed batches.',
      labelNames: ['kind'],
      registers: [registry],
    }),
    indexExpired: new Counter({
      name: 'drover_index_expired_total',
      help: 'Events the embedded index did not index: their day of event time is past index.retention.maxAge (or older than every partition at the cap on partitions).',
      registers: [registry],
    }),
    indexPartitionsDropped: new Counter({
      name: 'drover_index_partitions_dropped_total',
      help: 'Day partitions of the embedded index dropped, by reason (age, size, count).',
      labelNames: ['reason'],
      registers: [registry],
    }),
    ruleEvaluation: new Histogram({
      name: 'drover_rule_evaluation_seconds',
      help: 'Time the rules engine spends on one bus batch.',
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
      registers: [registry],
    }),
    ruleEvents: new Counter({
      name: 'drover_rule_events_total',
      help: 'Events evaluated by the rules engine.',
      registers: [registry],
    }),
    alerts: new Counter({
      name: 'drover_alerts_total',
      help: 'Alerts fired, by rule.',
      labelNames: ['rule'],
      registers: [registry],
    }),
    actions: new Counter({
      name: 'drover_actions_total',
      help: 'Remediation decisions, by adapter and outcome (executed, suppressed, dry-run, failed).',
      labelNames: ['adapter', 'outcome'],
      registers: [registry],
    }),
    verifications: new Counter({
      name: 'drover_remediation_verifications_total',
      help: 'Remediations verified, by outcome: effective (the alert resolved within verify_within), ineffective (it did not), skipped (nothing to verify).',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    suppressions: new Counter({
      name: 'drover_guard_suppressions_total',
      help: 'Actions a guard rail stopped, by guard.',
      labelNames: ['reason'],
      registers: [registry],
    }),
    faults: new Counter({
      name: 'drover_faults_total',
      help: 'Faults Drover survived and retries (snapshot writes, rule reloads, a busy store), by kind.',
      labelNames: ['kind'],
      registers: [registry],
    }),
    ruleLateEvents: new Counter({
      name: 'drover_rules_late_events_total',
      help: 'Events the rules engine received after the watermark had passed their time: they count only in windows still open.',
      registers: [registry],
    }),
    ruleFutureEvents: new Counter({
      name: 'drover_rules_future_events_total',
      help: 'Events the rules engine refused: their time lies beyond the wall clock plus rules.maxFutureSkew.',
      registers: [registry],
    }),
    notificationGroups: new Gauge({
      name: 'drover_notification_groups',
      help: 'Notification groups alive (waiting to send, or within group_interval of their last page).',
      registers: [registry],
    }),
    notificationGroupOverflow: new Counter({
      name: 'drover_notification_group_overflow_total',
      help: 'Alerts of grouped notify actions that found the cap on groups and paged through the cooldown path.',
      registers: [registry],
    }),
    ruleKeys: new Gauge({
      name: 'drover_rule_keys',
      help: 'Keys each rule holds state for.',
      labelNames: ['rule'],
      registers: [registry],
    }),
    ruleKeysRefused: new Counter({
      name: 'drover_rule_keys_refused_total',
      help: 'New keys a rule refused because it held max_keys keys already, by rule.',
      labelNames: ['rule'],
      registers: [registry],
    }),
    snapshotSeconds: new Summary({
      name: 'drover_snapshot_seconds',
      help: 'Longest time one rule snapshot held the event loop at once (it is written in slices: taking the changed state, encoding, writing), over the process lifetime.',
      percentiles: [0.5, 0.9, 0.99, 1],
      registers: [registry],
    }),
    snapshotBytes: new Gauge({
      name: 'drover_snapshot_bytes',
      help: 'Size of the rule checkpoint store on disk after the last snapshot written.',
      registers: [registry],
    }),
    ruleTermsRefused: new Counter({
      name: 'drover_rule_terms_refused_total',
      help: 'New terms a new_term rule refused at max_terms, or new distinct values a cardinality key refused at its cap (10,000), by rule.',
      labelNames: ['rule'],
      registers: [registry],
    }),
    taskLag: new Gauge({
      name: 'drover_rules_task_lag_messages',
      help: 'Kafka rules workers: messages of each partition of a task this process holds that its engine has yet to process, by topic and partition.',
      labelNames: ['topic', 'partition'],
      registers: [registry],
    }),
    tasksAssigned: new Gauge({
      name: 'drover_rules_tasks_assigned',
      help: 'Kafka rules workers: tasks (partition i of logs and metrics) this process holds.',
      registers: [registry],
    }),
    globalTaskAssigned: new Gauge({
      name: 'drover_rules_global_task_assigned',
      help: 'Kafka rules workers: 1 when this process holds the global task (the rules whose key does not follow the partitioning), 0 when it stands by.',
      registers: [registry],
    }),
    globalRuleEvents: new Counter({
      name: 'drover_rules_global_events_total',
      help: 'Kafka rules workers: events the global task processed (each event is read a second time there, for the rules whose key does not follow the partitioning).',
      registers: [registry],
    }),
    taskRestoreSeconds: new Summary({
      name: 'drover_rules_task_restore_seconds',
      help: "Kafka rules workers: time to restore an assigned task's state from the changelog.",
      percentiles: [0.5, 0.9, 1],
      registers: [registry],
    }),
    taskReplayedEvents: new Counter({
      name: 'drover_rules_task_replayed_events_total',
      help: 'Kafka rules workers: events processed again after a task was restored (between its snapshot and the log end at the assignment).',
      registers: [registry],
    }),
    rebalances: new Counter({
      name: 'drover_rules_rebalances_total',
      help: 'Kafka rules workers: assignments this process received from the rules group.',
      registers: [registry],
    }),
    stalls: new Counter({
      name: 'drover_rules_stalls_total',
      help: 'Kafka rules workers: stalls (process stopped, event loop blocked) of a third of the session timeout or longer, after which the tasks held their alerts until the membership was confirmed.',
      registers: [registry],
    }),
    leaseLapses: new Counter({
      name: 'drover_rules_lease_lapses_total',
      help: 'Kafka rules workers: times no heartbeat or commit confirmed the membership for 0.9 of the session timeout (heartbeats lost, broker unreachable), after which the tasks held their alerts until it was confirmed.',
      registers: [registry],
    }),
    fencedAlerts: new Counter({
      name: 'drover_rules_fenced_alerts_total',
      help: 'Kafka rules workers: alerts not emitted because their task moved to another worker during a rebalance (reason: revoked), because an assignment came after a stall before the membership was confirmed (reason: stalled), or dropped from the ones held during a rebalance past 10,000 per task (reason: held-overflow). Claims the action store refuses for a stale generation are journaled as suppressed (idempotency).',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
  return m;
}

export type Telemetry = ReturnType<typeof createTelemetry>;
