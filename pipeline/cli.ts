import { type Command, EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, UsageError } from './commands/common.ts';
import {
  ACTIONS_LIST_OPTIONS,
  EXPLAIN_OPTIONS,
  BACKTEST_OPTIONS,
  DEMO_OPTIONS,
  DIFF_OPTIONS,
  IMPORT_OPTIONS,
  KILL_SWITCH_OPTIONS,
  LINT_OPTIONS,
  RELOAD_OPTIONS,
  SERVE_OPTIONS,
  SILENCE_OPTIONS,
  TEST_OPTIONS,
} from './commands/options.ts';
import { redact } from './redact.ts';

// Each command's module (and what it imports: the rules engine, the pipeline, the client
// libraries) is loaded only when that command runs, so `drover --version` and `--help`
// start at once.
export const COMMANDS: Command[] = [
  {
    name: 'rules lint',
    summary: 'check rule files against the schema and semantics',
    usage: `drover rules lint PATHS…

Checks rule files (YAML, one rule per file; folders are searched recursively) against
rules/schema.json and the semantic checks of the rule language. Prints each problem as
file:line:col message. Exit 0 when clean, 1 on any error, 2 on usage errors.

--format json prints one JSON object (files, rules, diagnostics). --format junit prints
JUnit XML for CI test reports: one testsuite per file, one testcase per rule, failures as
file:line:col message. --format github prints GitHub Actions annotations, one
::error file=F,line=L,col=C,title=RULE::message per problem (::warning for warnings).

Options:
  --format text|json|junit|github
                       output format (default text)
  -h, --help           this help`,
    options: LINT_OPTIONS,
    run: async (args) => (await import('./commands/rules.ts')).lintCommand(args),
  },
  {
    name: 'rules test',
    summary: 'run rule unit tests (*.test.yaml)',
    usage: `drover rules test PATHS…

Runs rule unit tests (*.test.yaml files; folders are searched recursively), in the spirit
of promtool test rules: input events at offsets, expected alerts with tolerances, and no
other alerts. Prints each failure and a closing "N passed, N failed" line.
Exit 0 when all pass, 1 on any failure, 2 on usage errors.

--format junit prints JUnit XML instead: one testsuite per test file, one testcase per
test case, failures as file:line:col message. --format github prints a GitHub Actions
annotation per failing test case (the summary line goes to stderr).

Options:
  --format text|junit|github
                       output format (default text)
  -h, --help           this help`,
    options: TEST_OPTIONS,
    run: async (args) => (await import('./commands/rules.ts')).testCommand(args),
  },
  {
    name: 'rules import',
    summary: 'convert ElastAlert 2 rule files into Drover rules',
    usage: `drover rules import elastalert PATHS… [--out DIR]

Converts ElastAlert 2 rule files (folders are searched recursively) into Drover rules:
the rule types both have (any, frequency, spike, flatline, new_term, change, cardinality,
metric_aggregation; blacklist and whitelist become any with a filter), their options, with
durations like {minutes: 5} as 5m, the filter's query DSL (term, terms, match,
match_phrase, prefix, numeric range, exists, bool, and query_string's simple forms:
field:value, "phrases", AND/OR/NOT, parentheses), query_key, realert, and each alerter as
a notify action on an adapter of the alerter's name. What cannot be converted is printed
on stderr as file:line:col; a rule whose filter was not converted whole is written with
enabled: false. Every rule is linted before it is printed or written. Without --out the
rules are printed as YAML documents; with it, one file per rule (NAME.yaml; an existing
file is not overwritten). Exit 0 when every rule converted, 1 when one was not or was
written disabled, 2 on usage errors. See docs/rules.md, "Coming from ElastAlert".

Options:
  --out DIR            write one rule file per rule into DIR (created if missing)
  -h, --help           this help`,
    options: IMPORT_OPTIONS,
    run: async (args) => (await import('./commands/rules.ts')).importCommand(args),
  },
  {
    name: 'rules reload',
    summary: 'ask a running drover serve to reload its rules',
    usage: `drover rules reload [--url URL] [--config FILE] [--state-dir DIR]

POSTs /v1/rules/reload to a running drover serve with its admin token. The URL is --url,
else the listen address of the configuration (--config). The token is DROVER_ADMIN_TOKEN,
else the configuration's first listen.adminTokens, else the one drover serve generated
into its state directory (--state-dir, the configuration's stateDir, DROVER_STATE_DIR or
.drover). A rule set that fails validation is rejected with its errors and the running
one stays. Exit 0 when reloaded, 1 when rejected or refused, 2 on usage errors.

Options:
  --url URL            drover serve's address (default: the configuration's listen)
  --config FILE        drover serve's configuration
  --state-dir DIR      drover serve's state directory (for its admin token)
  -h, --help           this help`,
    options: RELOAD_OPTIONS,
    run: async (args) => (await import('./commands/rules.ts')).reloadCommand(args),
  },
  {
    name: 'rules diff',
    summary: 'what a rule change would have done: alerts and actions, base against head',
    usage: `drover rules diff --base REF|DIR [--head DIR] (--data FILE|- | --source elasticsearch|kafka ...) [--from T] [--to T] [--format text|json|markdown] [--config FILE]

Runs two rule sets over the same events in one pass (one read of the data, two engines)
and reports per rule the alerts added, removed and moved (the same incident at another
time: same rule and key, times within the rule's timeframe or realert, whichever is
longer, and at least 1s), with counts per key and the first examples; and the actions
each side would have run through the policy and the guard rails of --config (budgets,
cooldowns, breaker, storm cap, inhibition, maintenance, kill switch), simulated in
dry-run with a clock in event time. --base is a folder, or a git ref whose rule files
under the head folder's path are read with git show (no checkout). docs/rules.md,
"Reviewing a change", has the details. Exit 0 when nothing differs, 1 when alerts or
actions differ, 2 on usage errors (rules with errors included).

Options:
  --base REF|DIR       the rules as they are: a git ref (HEAD~1, origin/main) or a folder
  --head DIR           the rules as changed (default: the configuration's first rules
                       path, else ./rules)
  --data FILE|-        NDJSON events; - reads standard input
  --source SRC         elasticsearch or kafka instead of --data, as for drover backtest
                       (--index, --topic, --warmup too)
  --index PATTERN      --source elasticsearch: the indices (default PREFIX-events*)
  --topic T            --source kafka: the topic
  --warmup DURATION    --source elasticsearch|kafka: history read before --from
  --from T             alert only from this time (earlier events warm state)
  --to T               stop at this time
  --format FMT         text (default), json (one line per rule) or markdown (a PR comment,
                       under 60,000 characters)
  --config FILE        drover serve's configuration: its adapters, actionSets and guards
  --lateness DURATION  allowed lateness of events (default 5s)
  -h, --help           this help`,
    options: DIFF_OPTIONS,
    run: async (args) => (await import('./commands/diff.ts')).diffCommand(args),
  },
  {
    name: 'backtest',
    summary: 'replay history (NDJSON, Elasticsearch, Kafka) through rules: alerts and actions',
    usage: `drover backtest --rules PATH… --data FILE|- [--from T] [--to T] [--format text|json|markdown] [--states]
       drover backtest --rules PATH… --source elasticsearch [--index PATTERN] --from T [--to T] [--warmup DURATION] [--config FILE]
       drover backtest --rules PATH… --source kafka --topic T --from T [--to T] [--warmup DURATION] [--config FILE]

Replays events through the rules and prints the alerts and the actions that would have
run: NDJSON (any format ingest accepts per line, normalized the same way), Drover's own
Elasticsearch event indices, or the retained Kafka bus. Events before --from build state
without alerting; time stops at the last event, or at --to. The stores are read from
--from minus the warm-up the rules need (their longest windows; --warmup overrides it),
in event-time order, a page at a time; the warm-up each rule got is reported on stderr.
The Elasticsearch URL and the Kafka brokers are taken as drover serve takes them
(ELASTICSEARCH_URL, KAFKA_BROKERS, or --config). T is an ISO 8601 time or epoch
milliseconds. A progress bar is drawn on stderr when it is a terminal. Exit 0 when no
alert fired, 1 when alerts fired (findings), 2 on usage errors (a missing index, an
unreachable server included).

Options:
  --rules PATH         rule file or folder (repeatable)
  --data FILE|-        NDJSON events; - reads standard input
  --source SRC         file (with --data; the default), elasticsearch or kafka
  --index PATTERN      --source elasticsearch: the indices (default PREFIX-events*, PREFIX
                       being index.prefix, drover by default)
  --topic T            --source kafka: the topic (e.g. drover.logs)
  --warmup DURATION    --source elasticsearch|kafka: history read before --from (default:
                       the longest window the rules need)
  --config FILE        drover serve's configuration (the Elasticsearch URL, the brokers)
  --from T             alert only from this time
  --to T               stop at this time
  --format FMT         text (default), json (one alert per line) or markdown (a table)
  --lateness DURATION  allowed lateness of events (default 5s)
  --states             list state changes too (pending, inactive, resolved): text and
                       markdown lines, json lines with a "state" field; the summary on
                       stderr counts them either way
  -h, --help           this help`,
    options: BACKTEST_OPTIONS,
    run: async (args) => (await import('./commands/backtest.ts')).backtestCommand(args),
  },
  {
    name: 'demo',
    summary: 'see what Drover is for: a real fleet, scripted faults, real remediation',
    usage: `drover demo [--keep-running]

Starts Drover on the embedded back ends and a small fleet of real Node.js servers (web x3,
api x2, worker x1) logging with pino into it, drives traffic at them, and scripts four
faults: a new stack trace on an api replica, a web replica that hangs and goes silent, a
traffic surge on web, and a worker that crash-loops. Each is detected by a rule from
examples/rules and remediated by the process adapter behind the guard rails; a timeline
and a summary are printed. Exit 0 only if every fault was handled as expected.

Options:
  --keep-running       leave the fleet and pipeline up, and print the URLs
  -h, --help           this help`,
    options: DEMO_OPTIONS,
    run: async (args) => (await import('./commands/demo.ts')).demoCommand(args),
  },
  {
    name: 'serve',
    summary: 'run the pipeline: ingest, bus, index, rules and remediation',
    usage: `drover serve [--config drover.yaml] [--roles ingest,index,rules,actions]

Runs the endpoint (default 127.0.0.1:4280, statsd on UDP 8125), the bus, the indexer,
the rules engine and remediation in one process, on the embedded back ends unless the
configuration (or KAFKA_BROKERS / ELASTICSEARCH_URL) selects Kafka and Elasticsearch.
SIGHUP or POST /v1/rules/reload reloads the rules; SIGTERM drains, snapshots and stops.
The configuration is documented in docs/configuration.md.

On the Kafka bus --roles (or the configuration's roles) runs only some parts, so ingest
replicas, indexers and a rules worker run apart from one configuration: ingest (HTTP
and statsd listeners), index (the indexer), rules and actions (together). The control
API and /metrics are served whatever the roles. See docs/scale-out.md.

Options:
  --config FILE        the configuration (default: built-in defaults)
  --roles LIST         what this process runs, comma-separated (default: all four)
  -h, --help           this help`,
    options: SERVE_OPTIONS,
    run: async (args) => (await import('./commands/serve.ts')).serveCommand(args),
  },
  {
    name: 'actions list',
    summary: 'read the journal of remediation decisions',
    usage: `drover actions list [--since T|DURATION] [--rule NAME] [--format text|json] [--limit N] [--config FILE | --db PATH]

Lists decisions newest first: executed (with the adapter's result), suppressed (with the
guard that stopped it), dry-run, failed (with the error). --since takes a time or a
duration back from now (1h). --config reads the store drover serve's configuration
names (SQLite or Elasticsearch); otherwise the journal is .drover/actions.db unless
--db or DROVER_STATE_DIR says otherwise.

Options:
  --since T|DURATION   only decisions from this time, or this long ago (1h)
  --rule NAME          only this rule's decisions
  --format FMT         text (default) or json (one decision per line)
  --limit N            at most N decisions (default 100)
  --config FILE        the store drover serve's configuration names
  --db PATH            the SQLite journal (default .drover/actions.db)
  -h, --help           this help`,
    options: ACTIONS_LIST_OPTIONS,
    run: async (args) => (await import('./commands/actions.ts')).actionsListCommand(args),
  },
  {
    name: 'explain',
    summary: 'why an alert fired and what was decided: its events, states and journal',
    usage: `drover explain ALERT_ID [--format text|json] [--config FILE | --db PATH]

Prints the whole chain of one alert: what made it fire (its figures, the window it
looked at in event time, the rule's content hash and file, a bounded sample of the
events that counted), its state changes (firing, resolved), and every journal entry
under its id in order, whatever its kind, with each guard evaluated and its inputs and
the adapter's request and result. --config reads the store drover serve's configuration
names (SQLite, or Elasticsearch: the journal and the alerts index); otherwise the
journal is .drover/actions.db unless --db or DROVER_STATE_DIR says otherwise. Exits 1
when the alert is known to neither.

Options:
  --format FMT         text (default) or json
  --config FILE        the store drover serve's configuration names
  --db PATH            the SQLite journal (default .drover/actions.db)
  -h, --help           this help`,
    options: EXPLAIN_OPTIONS,
    run: async (args) => (await import('./commands/explain.ts')).explainCommand(args),
  },
  {
    name: 'actions kill-switch',
    summary: 'stop (on) or allow (off) every remediation action',
    usage: `drover actions kill-switch on|off|status [--config FILE | --db PATH]

The global kill switch: while on, every decision is journaled as suppressed and no
adapter acts. It is stored with the journal, so every worker sharing it obeys
(--config: the store drover serve's configuration names, SQLite or Elasticsearch).

Options:
  --config FILE        the store drover serve's configuration names
  --db PATH            the SQLite journal (default .drover/actions.db)
  -h, --help           this help`,
    options: KILL_SWITCH_OPTIONS,
    run: async (args) => (await import('./commands/actions.ts')).killSwitchCommand(args),
  },
  {
    name: 'actions silence',
    summary: 'silence remediation for matching alerts until a time, list or remove silences',
    usage: `drover actions silence add FIELD=VALUE... (--for DURATION | --until TIME) [--comment TEXT] [--expire-on-resolve]
drover actions silence list [--format text|json]
drover actions silence remove ID
  (each also takes --url URL, --config FILE, --state-dir DIR, or --db PATH)

A silence stops actions (they are journaled as suppressed) for alerts whose fields all
match: rule=NAME, labels.team=payments, key.host.name=web-3; a value starting with ~
is a regular expression (key.host.name=~web-.*). It expires on its own; with
--expire-on-resolve it also ends when an alert it matches resolves.

The command asks the running drover serve, through its control API with the admin
token, as drover rules reload does: the URL is --url, else the configuration's listen
address; the token is DROVER_ADMIN_TOKEN, else the configuration's listen.adminTokens,
else the one drover serve generated into the state directory (--state-dir, else the
configuration's). --db PATH is the offline mode, for a server that is not running: it
writes that SQLite journal directly.

Options:
  --for DURATION       add: how long the silence lasts (1h)
  --until TIME         add: when it ends (ISO 8601 or epoch milliseconds)
  --comment TEXT       add: why, shown by list
  --expire-on-resolve  add: end the silence when an alert it matches resolves
  --format FMT         list, add: text (default) or json
  --config FILE        the store drover serve's configuration names
  --db PATH            the SQLite journal (default .drover/actions.db)
  -h, --help           this help`,
    options: SILENCE_OPTIONS,
    run: async (args) => (await import('./commands/actions.ts')).silenceCliCommand(args),
  },
];

function topHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `drover — observability pipeline with an auto-remediation rules engine

Usage: drover COMMAND [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run "drover COMMAND --help" for a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    (argv.length === 0 ? process.stderr : process.stdout).write(`${topHelp()}\n`);
    return argv.length === 0 ? EXIT_USAGE : EXIT_OK;
  }
  if (argv[0] === '--version') {
    process.stdout.write('drover 0.1.0\n');
    return EXIT_OK;
  }
  const command =
    COMMANDS.find((c) => c.name.includes(' ') && `${argv[0]} ${argv[1]}` === c.name) ??
    COMMANDS.find((c) => c.name === argv[0]);
  if (!command) {
    const group = COMMANDS.filter((c) => c.name.startsWith(`${argv[0]} `));
    if (group.length > 0 && (argv[1] === undefined || argv[1] === '--help' || argv[1] === '-h')) {
      process.stdout.write(
        `Usage:\n${group.map((c) => `  drover ${c.name}  ${c.summary}`).join('\n')}\n`,
      );
      return argv[1] === undefined ? EXIT_USAGE : EXIT_OK;
    }
    process.stderr.write(
      `drover: unknown command "${argv.slice(0, 2).join(' ')}"\n\n${topHelp()}\n`,
    );
    return EXIT_USAGE;
  }
  const rest = argv.slice(command.name.split(' ').length);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n`);
    return EXIT_OK;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    // Not every thrown value is an Error, nor every `code` a string (kafkajs's are numbers).
    const code = (err as { code?: unknown } | null | undefined)?.code;
    if (
      err instanceof UsageError ||
      (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))
    ) {
      process.stderr.write(
        `drover ${command.name}: ${redact((err as Error).message)}\n\n${command.usage}\n`,
      );
      return EXIT_USAGE;
    }
    // Anything else is Drover's own failure: logged as such, with its stack.
    const { createLogger } = await import('./logger.ts');
    createLogger().fatal({ err, command: command.name }, 'command failed');
    return EXIT_FINDINGS;
  }
}
