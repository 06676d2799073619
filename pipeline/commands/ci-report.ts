/**
 * Reports of `drover rules lint` and `drover rules test` for CI systems: JUnit XML (read by
 * GitLab, Jenkins, CircleCI, Azure and most test dashboards; the shape of promtool's
 * `--junit`) and GitHub Actions workflow commands (annotations at file:line:col on a pull
 * request's diff).
 *
 * Everything written here can come from a rule file (rule names, test names, messages that
 * quote a field or value), i.e. from whoever wrote the pull request: every string goes through
 * the escaping of its format, and characters XML 1.0 cannot carry at all (control characters,
 * lone surrogates, U+FFFE/U+FFFF) are written as visible `\uXXXX` text rather than dropped.
 */

/** A test case of a JUnit report: a rule (lint) or a test case (rules test). */
export interface CiCase {
  name: string;
  file: string;
  line: number;
  col: number;
  /** Each failure: where and what. An empty list is a pass. */
  failures: Array<{ line: number; col: number; message: string }>;
  /** Findings that do not fail the case (lint warnings), in the case's output. */
  notes?: string[];
  /** Seconds, when measured. */
  time?: number;
}

/** A test suite of a JUnit report: one per file. */
export interface CiSuite {
  file: string;
  cases: CiCase[];
}

/**
 * Characters XML 1.0 allows: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] |
 * [#x10000-#x10FFFF]. Matched per code unit with the `u` flag off, so a lone surrogate is one
 * match and a proper pair is kept by the second alternative.
 */
const NOT_XML_CHAR =
  /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\uD800-\uDFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function visible(ch: string): string {
  return `\\u${ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * Text content: `&`, `<`, `>` (so `]]>` cannot appear either), non-XML characters, and CR as
 * a character reference (a parser turns a literal CR or CR LF into LF).
 */
export function xmlText(s: string): string {
  return s
    .replace(NOT_XML_CHAR, visible)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/\r/g, '&#13;');
}

/** Attribute values: text escaping, quotes, and tab/newline kept as character references. */
export function xmlAttr(s: string): string {
  return xmlText(s)
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
    .replace(/\t/g, '&#9;')
    .replace(/\n/g, '&#10;');
}

function attrs(pairs: Array<[string, string | number | undefined]>): string {
  return pairs
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${xmlAttr(String(v))}"`)
    .join('');
}

/** A JUnit XML document: `<testsuites>` of one `<testsuite>` per file. */
export function junitReport(name: string, suites: CiSuite[]): string {
  const count = (s: CiSuite) => ({
    tests: s.cases.length,
    failures: s.cases.filter((c) => c.failures.length > 0).length,
  });
  const total = suites.reduce(
    (t, s) => {
      const c = count(s);
      return { tests: t.tests + c.tests, failures: t.failures + c.failures };
    },
    { tests: 0, failures: 0 },
  );
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  out.push(
    `<testsuites${attrs([
      ['name', name],
      ['tests', total.tests],
      ['failures', total.failures],
      ['errors', 0],
    ])}>`,
  );
  for (const suite of suites) {
    const c = count(suite);
    out.push(
      `  <testsuite${attrs([
        ['name', suite.file],
        ['tests', c.tests],
        ['failures', c.failures],
        ['errors', 0],
        ['skipped', 0],
        ['file', suite.file],
      ])}>`,
    );
    for (const tc of suite.cases) {
      const head = `    <testcase${attrs([
        ['name', tc.name],
        ['classname', suite.file],
        ['file', tc.file],
        ['line', tc.line],
        ['time', tc.time === undefined ? undefined : tc.time.toFixed(3)],
      ])}`;
      if (tc.failures.length === 0 && !tc.notes?.length) {
        out.push(`${head}/>`);
        continue;
      }
      out.push(`${head}>`);
      if (tc.failures.length > 0) {
        const lines = tc.failures.map((f) => `${tc.file}:${f.line}:${f.col} ${f.message}`);
        out.push(
          `      <failure${attrs([
            ['message', lines[0]],
            ['type', 'error'],
          ])}>${xmlText(lines.join('\n'))}</failure>`,
        );
      }
      if (tc.notes?.length)
        out.push(`      <system-out>${xmlText(tc.notes.join('\n'))}</system-out>`);
      out.push('    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}

/** The message part of a workflow command: `%`, CR and LF (GitHub's escapeData). */
export function githubData(s: string): string {
  return s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** A property value of a workflow command: as data, plus `:` and `,` (escapeProperty). */
export function githubProperty(s: string): string {
  return githubData(s).replace(/:/g, '%3A').replace(/,/g, '%2C');
}

/** One annotation: `::error file=F,line=L,col=C,title=T::message`. */
export function githubAnnotation(
  level: 'error' | 'warning' | 'notice',
  where: { file: string; line: number; col: number },
  title: string,
  message: string,
): string {
  const props = [
    `file=${githubProperty(where.file)}`,
    `line=${where.line}`,
    `col=${where.col}`,
    `title=${githubProperty(title)}`,
  ].join(',');
  return `::${level} ${props}::${githubData(message)}`;
}
