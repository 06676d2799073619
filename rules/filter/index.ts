export { type Constraint, requiredValues } from './analyze.ts';
export { compileFilter, type Filter } from './compile.ts';
export {
  CUSTOM_OPERATORS,
  MATCH_INPUT_LIMIT,
  parseRegex,
  pathSegments,
  UnsafeRegexError,
} from './operators.ts';
export { regexHazard } from './regex-safety.ts';
export { createReferenceEngine, evaluateReference, toRuleConditions } from './reference.ts';
