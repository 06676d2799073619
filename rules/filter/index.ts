export { type Constraint, requiredValues } from './analyze.ts';
export { compileFilter, type Filter } from './compile.ts';
export { CUSTOM_OPERATORS, parseRegex, pathSegments } from './operators.ts';
export { createReferenceEngine, evaluateReference, toRuleConditions } from './reference.ts';
