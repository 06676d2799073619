import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Diagnostic, formatDiagnostic, loadRules, runTestFile } from '../../rules/index.ts';
import { type CiSuite, githubAnnotation, junitReport } from './ci-report.ts';
import { EXIT_FINDINGS, EXIT_OK, UsageError } from './common.ts';
import { IMPORT_OPTIONS, LINT_OPTIONS, RELOAD_OPTIONS, TEST_OPTIONS } from './options.ts';

export async function lintCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: LINT_OPTIONS,
    allowPositionals: true,
  });
  if (positionals.length === 0) throw new UsageError('give at least one rule file or folder');
  const format = values.format;
  if (format !== 'text' && format !== 'json' && format !== 'junit' && format !== 'github')
    throw new UsageError('--format is text, json, junit or github');
  const { rules, diagnostics, files } = await loadRules(positionals);
  const errors = diagnostics.filter((d) => d.severity === 'error');
  const summary = `${files.length} file${files.length === 1 ? '' : 's'}, ${rules.length} rule${rules.length === 1 ? '' : 's'}, ${errors.length} error${errors.length === 1 ? '' : 's'}`;
  if (format === 'json') {
    process.stdout.write(
      `${JSON.stringify({ files: files.length, rules: rules.length, diagnostics })}\n`,
    );
  } else if (format === 'junit') {
    process.stdout.write(junitReport('drover rules lint', lintSuites(files, rules, diagnostics)));
  } else if (format === 'github') {
    const ruleOf = new Map(rules.map((r) => [r.source?.file, r.name]));
    for (const d of diagnostics) {
      const title = ruleOf.get(d.file) ?? 'drover rules lint';
      process.stdout.write(`${githubAnnotation(d.severity, d, title, d.message)}\n`);
    }
    process.stderr.write(`${summary}\n`);
  } else {
    for (const d of diagnostics) process.stdout.write(`${formatDiagnostic(d)}\n`);
    process.stderr.write(`${summary}\n`);
  }
  return errors.length > 0 ? EXIT_FINDINGS : EXIT_OK;
}

/**
 * One suite per rule file and one case per rule in it (a file that does not parse is one
 * failing case named after the file); paths that are not rule files (missing, unreadable)
 * get a suite of their own.
 */
function lintSuites(
  files: string[],
  rules: Array<{ name: string; source?: { file: string } }>,
  diagnostics: Diagnostic[],
): CiSuite[] {
  const ruleOf = new Map(rules.map((r) => [r.source?.file, r.name]));
  const byFile = new Map<string, Diagnostic[]>(files.map((f) => [f, []]));
  for (const d of diagnostics) {
    const list = byFile.get(d.file);
    if (list) list.push(d);
    else byFile.set(d.file, [d]);
  }
  return [...byFile].map(([file, ds]) => {
    const first = ds[0];
    return {
      file,
      cases: [
        {
          name: ruleOf.get(file) ?? basename(file),
          file,
          line: first?.line ?? 1,
          col: first?.col ?? 1,
          failures: ds.filter((d) => d.severity === 'error'),
          notes: ds.filter((d) => d.severity === 'warning').map(formatDiagnostic),
        },
      ],
    };
  });
}

export async function testCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: TEST_OPTIONS,
    allowPositionals: true,
  });
  const format = values.format;
  if (format !== 'text' && format !== 'junit' && format !== 'github')
    throw new UsageError('--format is text, junit or github');
  if (positionals.length === 0)
    throw new UsageError('give at least one *.test.yaml file or folder');
  const files: string[] = [];
  for (const p of positionals) files.push(...(await findTestFiles(p)));
  if (files.length === 0)
    throw new UsageError(`no *.test.yaml files under ${positionals.join(', ')}`);
  let passed = 0;
  let failed = 0;
  const suites: CiSuite[] = [];
  const text = (line: string) => {
    if (format === 'text') process.stdout.write(`${line}\n`);
  };
  const github = (line: string) => {
    if (format === 'github') process.stdout.write(`${line}\n`);
  };
  for (const file of files) {
    const began = performance.now();
    const report = await runTestFile(file);
    const suite: CiSuite = { file, cases: [] };
    suites.push(suite);
    for (const d of report.diagnostics) {
      text(formatDiagnostic(d));
      github(githubAnnotation(d.severity, d, 'drover rules test', d.message));
      suite.cases.push({ name: basename(file), file, line: d.line, col: d.col, failures: [d] });
      failed++;
    }
    for (const r of report.results) {
      if (r.passed) {
        passed++;
        text(`ok    ${file}:${r.line} ${r.name}`);
      } else {
        failed++;
        text(`FAIL  ${file}:${r.line} ${r.name}`);
        for (const f of r.failures) text(`        ${f}`);
        github(githubAnnotation('error', r, r.name, r.failures.join('\n')));
      }
      suite.cases.push({
        name: r.name,
        file,
        line: r.line,
        col: r.col,
        failures: r.failures.map((message) => ({ line: r.line, col: r.col, message })),
      });
    }
    // The file's run time, shared among its cases: rules test runs a file's cases together.
    const each = (performance.now() - began) / 1000 / Math.max(1, suite.cases.length);
    for (const c of suite.cases) c.time = each;
  }
  const summary = `${passed} passed, ${failed} failed`;
  if (format === 'junit') process.stdout.write(junitReport('drover rules test', suites));
  else if (format === 'github') process.stderr.write(`${summary}\n`);
  else process.stdout.write(`${summary}\n`);
  return failed > 0 ? EXIT_FINDINGS : EXIT_OK;
}

async function findTestFiles(path: string): Promise<string[]> {
  let s: Awaited<ReturnType<typeof stat>>;
  try {
    s = await stat(path);
  } catch {
    throw new UsageError(`${path}: no such file or folder`);
  }
  if (s.isFile()) return [path];
  const out: string[] = [];
  const entries = await readdir(path, { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const full = join(path, e.name);
    if (e.isDirectory()) out.push(...(await findTestFiles(full)));
    else if (/\.test\.ya?ml$/.test(e.name)) out.push(full);
  }
  return out;
}

/** `drover rules reload`: asks a running drover serve to reload its rules (admin route). */
export async function reloadCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: RELOAD_OPTIONS,
  });
  // The configuration's and the admin client's modules are loaded here, not by lint and test.
  const { ConfigError } = await import('../config.ts');
  const { adminClient, callAdmin } = await import('./admin-client.ts');
  let client: { url: string; token: string };
  try {
    client = adminClient({ url: values.url, config: values.config, stateDir: values['state-dir'] });
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  const { status, body } = await callAdmin(client, 'POST', '/v1/rules/reload');
  if (status === 200) {
    process.stdout.write(`rules reloaded: ${String(body.rules)}\n`);
    return EXIT_OK;
  }
  if (status === 422) {
    for (const e of (body.errors as string[] | undefined) ?? []) process.stdout.write(`${e}\n`);
    process.stderr.write(`reload rejected; the running rules (${String(body.rules)}) stay\n`);
    return EXIT_FINDINGS;
  }
  process.stderr.write(`drover serve answered ${status}: ${String(body.error ?? '')}\n`);
  return EXIT_FINDINGS;
}

/**
 * `drover rules import elastalert PATHS… [--out DIR]`: ElastAlert 2 rule files as Drover
 * rules, each linted before it is printed or written (rules/import/elastalert.ts).
 */
export async function importCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: IMPORT_OPTIONS,
    allowPositionals: true,
  });
  const [from, ...paths] = positionals;
  if (from !== 'elastalert') throw new UsageError('the rules to import: elastalert');
  if (paths.length === 0) throw new UsageError('give at least one ElastAlert rule file or folder');
  const { importElastalertPaths } = await import('../../rules/import/elastalert.ts');
  const { rules, diagnostics } = await importElastalertPaths(paths);
  for (const d of diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
  const failed = diagnostics.filter((d) => d.severity === 'error').length;
  const disabled = rules.filter((r) => r.disabled).length;
  if (values.out === undefined) {
    process.stdout.write(rules.map((r) => r.text).join('---\n'));
  } else {
    await mkdir(values.out, { recursive: true });
    // Names are [a-z0-9._-] and not "." or "..": safe as file names inside --out.
    for (const r of rules)
      await writeFile(join(values.out, `${r.name}.yaml`), r.text, { flag: 'wx' }).catch(
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw err;
          throw new UsageError(`${join(values.out!, `${r.name}.yaml`)} exists: not overwritten`);
        },
      );
  }
  process.stderr.write(
    `${rules.length} rule${rules.length === 1 ? '' : 's'} converted${disabled > 0 ? ` (${disabled} written disabled)` : ''}, ${failed} not converted\n`,
  );
  return failed > 0 || disabled > 0 ? EXIT_FINDINGS : EXIT_OK;
}
