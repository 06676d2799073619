import { join } from 'node:path';

/**
 * What the two `drover serve` verification tests (embedded, and Kafka + Elasticsearch)
 * share: two any rules that replace a real replica each, one resolving within its
 * window (effective), one not (ineffective, escalated to the `pager` adapter), the
 * replica they run, and the shape of a journal entry they read back.
 */
export const REPLICA = join(import.meta.dirname, '..', 'actions', 'fixtures', 'replica.js');

export type VerifiedEntry = {
  id: string;
  alertId?: string;
  rule: string;
  target: string;
  decision: string;
  verification?: { outcome: string; by?: string };
};

function rule(name: string, host: string, resolveAfter: string, within: string): string {
  return `name: ${name}
type: any
query_key: host.name
realert: 1h
resolve_after: ${resolveAfter}
filter: { all: [ { fact: host.name, operator: equal, value: ${host} } ] }
actions:
  - adapter: fleet
    operation: kill-and-replace
    verify_within: ${within}
    on_ineffective: { adapter: pager, operation: notify, group: false }
`;
}

/** The rule files, for `workdir`: web-1's alert resolves after 1 s, web-2's never does. */
export const VERIFICATION_RULES = {
  'rules/helps.yaml': rule('replace-helps', 'web-1', '1s', '20s'),
  'rules/does-not-help.yaml': rule('replace-does-not-help', 'web-2', '1h', '5s'),
};

/** The process adapter's fleet: two replicas of the fixture, for the configuration. */
export const FLEET_ADAPTER = `  fleet:
    type: process
    services:
      web: { command: "${process.execPath}", args: ["${REPLICA}"], replicas: 2, healthPath: /healthz }
`;
