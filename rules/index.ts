export { type ActionProblem, actionProblems } from './action.ts';
export { type AlertDocument, alertDocument, stateDocument } from './alert-document.ts';
export {
  type BacktestInput,
  type BacktestOptions,
  type BacktestSummary,
  backtest,
  backtestSets,
  defaultWarmupMs,
  openData,
  warmupNeedMs,
  warmupReport,
  type WarmupEntry,
} from './backtest.ts';
export { parseDuration } from './duration.ts';
export {
  Engine,
  type EngineCounts,
  type EngineOptions,
  type EngineSnapshot,
  type RuleStats,
  SNAPSHOT_VERSION,
} from './engine.ts';
export {
  compileFilter,
  createReferenceEngine,
  evaluateReference,
  requiredValues,
  toRuleConditions,
} from './filter/index.ts';
export { type Diagnostic, formatDiagnostic, loadRules, parseRuleFile } from './load.ts';
export { FileContext, type Path, readYamlDocument } from './load/yaml.ts';
export { runTestFile, type TestFileReport, type TestResult } from './ruletest.ts';
export * from './types.ts';
export {
  EVIDENCE_BYTES,
  EVIDENCE_EVENTS,
  EvidenceRing,
  type Explanation,
  explain,
  renderEvent,
  ruleHash,
  windowOf,
} from './explain.ts';
