import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { ciFixtures, drover, EXAMPLES, HOSTILE } from './ci-fixtures.ts';

/** The python of a venv with junitparser (PyPI), a JUnit reader CI tooling uses. */
const python = inject('junitparser');
const skip = python ? '' : ` (skipped: ${inject('serverSkipReasons').junitparser})`;

/** Reads a JUnit file with junitparser and returns what it understood. */
const READ = `
import json, sys
from junitparser import JUnitXml, TestSuite
xml = JUnitXml.fromfile(sys.argv[1])
suites = [xml] if isinstance(xml, TestSuite) else list(xml)
print(json.dumps({
  "tests": xml.tests, "failures": xml.failures, "errors": xml.errors,
  "suites": [{
    "name": s.name, "tests": s.tests, "failures": s.failures,
    "cases": [{
      "name": c.name, "classname": c.classname, "line": c._elem.get("line"),
      "passed": c.is_passed,
      "results": [{"type": type(r).__name__, "message": r.message, "text": r.text} for r in c.result],
    } for c in s],
  } for s in suites],
}))
`;

interface Read {
  tests: number;
  failures: number;
  errors: number;
  suites: Array<{
    name: string;
    tests: number;
    failures: number;
    cases: Array<{
      name: string;
      classname: string;
      line: string;
      passed: boolean;
      results: Array<{ type: string; message: string; text: string }>;
    }>;
  }>;
}

const dir = ciFixtures();

function readJunit(xml: string): Read {
  const file = join(dir, `report-${Date.now()}-${Math.random()}.xml`);
  writeFileSync(file, xml);
  const r = spawnSync(python!, ['-c', READ, file], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Read;
}

/** What XML can carry of HOSTILE: its control character and lone surrogate as \uXXXX text. */
const HOSTILE_IN_XML = HOSTILE.replace('\u0001', '\\u0001').replace('\uD800', '\\uD800');

describe('JUnit output read by junitparser', () => {
  it.skipIf(!python)(`rules lint: suites, cases and failures as written${skip}`, () => {
    const r = drover(dir, [
      'rules',
      'lint',
      '--format',
      'junit',
      'broken.yaml',
      'fatal-anywhere.yaml',
      'hostile.yaml',
    ]);
    expect(r.code).toBe(1);
    const got = readJunit(r.stdout);
    expect(got).toMatchObject({ tests: 3, failures: 2, errors: 0 });
    expect(got.suites.map((s) => [s.name, s.tests, s.failures])).toEqual([
      ['broken.yaml', 1, 1],
      ['fatal-anywhere.yaml', 1, 0],
      ['hostile.yaml', 1, 1],
    ]);
    const broken = got.suites[0]!.cases[0]!;
    expect(broken.passed).toBe(false);
    expect(broken.results).toHaveLength(1);
    expect(broken.results[0]!.type).toBe('Failure');
    expect(broken.results[0]!.text.split('\n')).toContain('broken.yaml:4:1 unknown option "bogus"');
    expect(got.suites[1]!.cases).toEqual([
      {
        name: 'fatal-anywhere',
        classname: 'fatal-anywhere.yaml',
        line: '1',
        passed: true,
        results: [],
      },
    ]);
    const hostile = got.suites[2]!.cases[0]!.results[0]!;
    expect(hostile.message).toBe(`hostile.yaml:3:1 unknown option "${HOSTILE_IN_XML}"`);
    expect(hostile.text).toBe(hostile.message);
  });

  it.skipIf(!python)(`rules test: a case per test case, hostile names intact${skip}`, () => {
    const r = drover(dir, [
      'rules',
      'test',
      '--format',
      'junit',
      'broken.test.yaml',
      'unreadable.test.yaml',
    ]);
    expect(r.code).toBe(1);
    const got = readJunit(r.stdout);
    expect(got).toMatchObject({ tests: 4, failures: 3, errors: 0 });
    const [suite, unreadable] = got.suites;
    expect(suite!.cases.map((c) => [c.name, c.line, c.passed])).toEqual([
      ['a fatal stays quiet', '3', false],
      ['an info stays quiet', '7', true],
      [HOSTILE_IN_XML, '11', false],
    ]);
    expect(suite!.cases[0]!.results[0]!.message).toBe(
      'broken.test.yaml:3:5 unexpected alert: fatal-anywhere at +0s key {"host.name":"db-1"} figures {}',
    );
    expect(unreadable!.cases[0]!.results[0]!.message).toBe(
      'unreadable.test.yaml:2:8 tests must be a list',
    );
  });

  it.skipIf(!python)(`the example rules: lint and test all pass${skip}`, () => {
    for (const command of ['lint', 'test']) {
      const r = drover(dir, ['rules', command, '--format', 'junit', EXAMPLES]);
      expect(r.code, command).toBe(0);
      const got = readJunit(r.stdout);
      expect(got.failures, command).toBe(0);
      expect(got.tests, command).toBeGreaterThanOrEqual(10);
      expect(got.suites.every((s) => s.cases.every((c) => c.passed))).toBe(true);
    }
  });
});
