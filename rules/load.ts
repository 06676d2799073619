import { readFile } from 'node:fs/promises';
import { semanticChecks } from './load/checks.ts';
import { collectFiles } from './load/files.ts';
import { reportSchemaErrors, validateSchema } from './load/schema.ts';
import { toRuleSpec } from './load/spec.ts';
import { type Diagnostic, readYamlDocument } from './load/yaml.ts';
import type { RuleSpec } from './types.ts';

/**
 * Loads rule files: YAML parsed with positions (load/yaml.ts), validated against
 * rules/schema.json (load/schema.ts), then checked for what a schema cannot say
 * (load/checks.ts: durations, regexes, paths, options that belong to another type),
 * built into specs by their kind (load/spec.ts), and checked for duplicate names. Every
 * problem is reported as `file:line:col message` at the node it concerns.
 */
export { type Diagnostic, formatDiagnostic } from './load/yaml.ts';

export function parseRuleFile(
  text: string,
  file: string,
): { rule?: RuleSpec; diagnostics: Diagnostic[] } {
  const read = readYamlDocument(text, file, {
    empty: 'empty rule file',
    several: 'one rule per file: this file holds several YAML documents',
  });
  if ('diagnostics' in read) return { diagnostics: read.diagnostics };
  const { ctx, data } = read;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    ctx.error([], 'a rule file is a mapping of options (name, type, ...)');
    return { diagnostics: ctx.diagnostics };
  }
  const raw = data as Record<string, unknown>;
  if (!validateSchema(raw)) reportSchemaErrors(ctx, raw, validateSchema.errors ?? []);
  semanticChecks(ctx, raw);
  if (ctx.diagnostics.length > 0) return { diagnostics: ctx.diagnostics };
  return { rule: toRuleSpec(raw, file), diagnostics: [] };
}

export async function loadRules(
  paths: string[],
): Promise<{ rules: RuleSpec[]; diagnostics: Diagnostic[]; files: string[] }> {
  const diagnostics: Diagnostic[] = [];
  const files: string[] = [];
  const seen = new Set<string>();
  for (const p of paths) files.push(...(await collectFiles(p, diagnostics, seen, true)));
  const rules: RuleSpec[] = [];
  const byName = new Map<string, { file: string; line: number }>();
  // Read together (rule files are trusted and small; all are held anyway), parsed in order.
  const texts = await Promise.allSettled(files.map((file) => readFile(file, 'utf8')));
  for (const [i, file] of files.entries()) {
    const read = texts[i]!;
    if (read.status === 'rejected') {
      const err: unknown = read.reason;
      // Unreadable now (removed, permissions): the set is refused, the running one stays.
      diagnostics.push({
        file,
        line: 1,
        col: 1,
        message: `cannot read: ${(err as Error).message}`,
        severity: 'error',
      });
      continue;
    }
    const text = read.value;
    const result = parseRuleFile(text, file);
    diagnostics.push(...result.diagnostics);
    if (!result.rule) continue;
    const { line, col } = positionOfName(text);
    const first = byName.get(result.rule.name);
    if (first) {
      diagnostics.push({
        file,
        line,
        col,
        message: `duplicate rule name "${result.rule.name}" (first defined at ${first.file}:${first.line})`,
        severity: 'error',
      });
      continue;
    }
    byName.set(result.rule.name, { file, line });
    rules.push(result.rule);
  }
  return { rules, diagnostics, files };
}

function positionOfName(text: string): { line: number; col: number } {
  const lines = text.split('\n');
  const i = lines.findIndex((l) => /^name\s*:/.test(l));
  if (i < 0) return { line: 1, col: 1 };
  const m = /^name\s*:\s*/.exec(lines[i]!)!;
  return { line: i + 1, col: m[0].length + 1 };
}
