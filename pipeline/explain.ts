import type { AlertHistory, AlertRecord, StateRecord } from '../actions/history/types.ts';
import { type Decision, formatDecision, type RemediationStore } from '../actions/index.ts';
import { terminalSafe } from './terminal-text.ts';

/**
 * `drover explain ALERT_ID` and `GET /v1/alerts/ID`: the whole chain of one alert — what
 * made it fire (its figures, window, rule hash and file, the events that counted), its
 * state changes, and every journal entry under its id in the order they were written,
 * whatever their kind (actions, notices, the resolved notification, and any later
 * outcome such as a verification of the remediation).
 */
export interface AlertChain {
  id: string;
  alert?: AlertRecord['alert'];
  explanation?: AlertRecord['explanation'];
  /** firing (the alert itself), then the recorded changes (resolved …), oldest first. */
  states: Array<{ state: string; at: string; id: string; firing_since?: string }>;
  /** Oldest first. */
  decisions: Decision[];
}

/** Journal entries of one alert read at most (its actions, notices, verifications). */
export const MAX_CHAIN_DECISIONS = 1000;

export class UnknownAlert extends Error {}

export async function explainAlert(
  history: AlertHistory,
  store: Pick<RemediationStore, 'list'>,
  id: string,
): Promise<AlertChain> {
  if (!/^[\w.:#/-]{1,200}$/.test(id))
    throw new UnknownAlert(`not an alert id: ${JSON.stringify(id.slice(0, 200))}`);
  const [record, changes, decisions] = await Promise.all([
    history.alert(id),
    history.states(id),
    store.list({ alertId: id, limit: MAX_CHAIN_DECISIONS }),
  ]);
  if (!record && decisions.length === 0 && changes.length === 0)
    throw new UnknownAlert(`no alert ${id} in the history or the journal`);
  const states: AlertChain['states'] = [
    ...(record ? [{ state: 'firing', at: record.alert.at, id }] : []),
    ...changes.map((c: StateRecord) => ({
      state: c.state,
      at: c.at,
      id: c.id,
      ...(c.firing_since !== undefined && { firing_since: c.firing_since }),
    })),
  ];
  return {
    id,
    ...(record && { alert: record.alert }),
    ...(record?.explanation && { explanation: record.explanation }),
    states,
    decisions: [...decisions].reverse(),
  };
}

/**
 * The chain for a person. Everything an event wrote (key, figures, events, targets,
 * reasons) goes out as JSON or with control characters escaped, so a log line cannot
 * drive the terminal.
 */
export function formatChain(c: AlertChain): string {
  const out: string[] = [];
  const a = c.alert;
  if (a) {
    out.push(`alert ${c.id}  rule ${a.rule} (${a.type})  key ${JSON.stringify(a.key)}`);
    out.push(`  fired at ${a.at}  figures ${JSON.stringify(a.figures)}`);
  } else out.push(`alert ${c.id}  (not in the alert history: journal entries only)`);
  const x = c.explanation;
  if (x) {
    out.push(`  rule hash ${x.rule.hash}${x.rule.file ? `  file ${x.rule.file}` : ''}`);
    out.push(
      `  window ${x.window.from} .. ${x.window.to}${x.window.reference ? `  reference ${x.window.reference.from} .. ${x.window.reference.to}` : ''}`,
    );
    out.push(
      `  events that counted: ${x.events.length} shown of ${x.eventsSeen} seen${x.eventsOmitted ? ` (${x.eventsOmitted} not shown)` : ''}`,
    );
    for (const e of x.events) out.push(`    ${JSON.stringify(e)}`);
  }
  out.push('states:');
  if (c.states.length === 0) out.push('  (none recorded)');
  for (const s of c.states)
    out.push(
      `  ${s.at}  ${s.state}${s.firing_since ? `  (firing since ${s.firing_since})` : ''}  ${s.id}`,
    );
  out.push('decisions:');
  if (c.decisions.length === 0) out.push('  (none journaled)');
  for (const d of c.decisions) {
    out.push(`  ${terminalSafe(formatDecision(d))}`);
    for (const g of d.guards ?? [])
      out.push(
        `      ${g.passed ? 'pass' : 'STOP'} ${g.guard.padEnd(15)} ${JSON.stringify(g.inputs)}`,
      );
    out.push(
      `      request ${JSON.stringify({ adapter: d.adapter, operation: d.operation, target: d.target, ...(d.params && { params: d.params }) })}`,
    );
    if (d.result) out.push(`      result ${JSON.stringify(d.result)}`);
  }
  return `${out.join('\n')}\n`;
}
