import { describe, expect, it } from 'vitest';
import {
  githubAnnotation,
  githubData,
  githubProperty,
  junitReport,
} from '../../pipeline/commands/ci-report.ts';
import { parseXml, type XmlElement } from '../support/xml.ts';
import { ciFixtures, drover, EXAMPLES, HOSTILE } from './ci-fixtures.ts';

const dir = ciFixtures();

/** The testsuite and testcase elements, decoded. */
function suites(root: XmlElement) {
  expect(root.name).toBe('testsuites');
  return root.children.map((s) => {
    expect(s.name).toBe('testsuite');
    return {
      name: s.attrs.name,
      tests: Number(s.attrs.tests),
      failures: Number(s.attrs.failures),
      cases: s.children.map((c) => {
        expect(c.name).toBe('testcase');
        const failure = c.children.find((f) => f.name === 'failure');
        return { name: c.attrs.name, line: c.attrs.line, failure: failure?.text };
      }),
    };
  });
}

/** What XML can carry of a string: characters outside XML 1.0 as visible \uXXXX text. */
const HOSTILE_IN_XML = HOSTILE.replace('\u0001', '\\u0001').replace('\uD800', '\\uD800');

describe('drover rules lint --format junit|github', () => {
  it('junit: a suite per file, a case per rule, failures at file:line:col', () => {
    const r = drover(dir, [
      'rules',
      'lint',
      '--format',
      'junit',
      'broken.yaml',
      'fatal-anywhere.yaml',
      'hostile.yaml',
      'missing.yaml',
    ]);
    expect(r.code, r.stderr).toBe(1);
    const got = suites(parseXml(r.stdout));
    expect(got.map((s) => [s.name, s.tests, s.failures])).toEqual([
      ['broken.yaml', 1, 1],
      ['fatal-anywhere.yaml', 1, 0],
      ['hostile.yaml', 1, 1],
      ['missing.yaml', 1, 1],
    ]);
    expect(got[0]!.cases[0]!.name).toBe('broken.yaml');
    expect(got[0]!.cases[0]!.failure!.split('\n').sort()).toEqual([
      'broken.yaml:1:7 name must use only lowercase letters, digits, ".", "_" and "-"',
      'broken.yaml:2:7 frequency rules need "timeframe"',
      'broken.yaml:3:13 "num_events" must be an integer',
      'broken.yaml:4:1 unknown option "bogus"',
    ]);
    expect(got[1]!.cases).toEqual([{ name: 'fatal-anywhere', line: '1', failure: undefined }]);
    // The rule does not load (an unknown option is an error): the case is named after its file.
    expect(got[2]!.cases[0]!.name).toBe('hostile.yaml');
    expect(got[2]!.cases[0]!.failure).toContain(HOSTILE_IN_XML);
    expect(got[3]!.cases[0]!.failure).toBe('missing.yaml:1:1 no such file or folder');
  });

  it('junit on the example rules: every rule a passing case, exit 0', () => {
    const r = drover(dir, ['rules', 'lint', '--format', 'junit', EXAMPLES]);
    expect(r.code, r.stdout).toBe(0);
    const got = suites(parseXml(r.stdout));
    expect(got.length).toBeGreaterThanOrEqual(10);
    for (const s of got) {
      expect(s.cases.length).toBe(1);
      expect(s.cases[0]!.failure).toBeUndefined();
    }
  });

  it('github: one annotation per problem, exactly', () => {
    const r = drover(dir, ['rules', 'lint', '--format', 'github', 'broken.yaml']);
    expect(r.code).toBe(1);
    expect(r.stdout.split('\n').sort()).toEqual([
      '',
      '::error file=broken.yaml,line=1,col=7,title=drover rules lint::name must use only lowercase letters, digits, ".", "_" and "-"',
      '::error file=broken.yaml,line=2,col=7,title=drover rules lint::frequency rules need "timeframe"',
      '::error file=broken.yaml,line=3,col=13,title=drover rules lint::"num_events" must be an integer',
      '::error file=broken.yaml,line=4,col=1,title=drover rules lint::unknown option "bogus"',
    ]);
    expect(r.stderr).toContain('1 file, 0 rules, 4 errors');
    const clean = drover(dir, ['rules', 'lint', '--format', 'github', EXAMPLES]);
    expect(clean.code).toBe(0);
    expect(clean.stdout).toBe('');
  });

  it('github: a hostile option name cannot end the annotation or start another', () => {
    const r = drover(dir, ['rules', 'lint', '--format', 'github', 'hostile.yaml']);
    expect(r.code).toBe(1);
    const lines = r.stdout.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^::error file=hostile\.yaml,line=3,col=1,title=drover rules lint::unknown option "a<b&c]]>/,
    );
    expect(lines[0]).toContain('100%25,x:y%0D%0A::error::end');
  });

  it('text and json stay as they were; other formats are usage errors', () => {
    const text = drover(dir, ['rules', 'lint', 'broken.yaml']);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('broken.yaml:4:1 unknown option "bogus"\n');
    const json = drover(dir, ['rules', 'lint', '--format', 'json', 'broken.yaml']);
    expect(JSON.parse(json.stdout)).toMatchObject({ files: 1, rules: 0 });
    expect(drover(dir, ['rules', 'lint', '--format', 'xml', 'broken.yaml']).code).toBe(2);
  });
});

describe('drover rules test --format junit|github', () => {
  it('junit: a suite per test file, a case per test case', () => {
    const r = drover(dir, [
      'rules',
      'test',
      '--format',
      'junit',
      'broken.test.yaml',
      'unreadable.test.yaml',
    ]);
    expect(r.code).toBe(1);
    const got = suites(parseXml(r.stdout));
    expect(got.map((s) => [s.name, s.tests, s.failures])).toEqual([
      ['broken.test.yaml', 3, 2],
      ['unreadable.test.yaml', 1, 1],
    ]);
    const [quiet, info, hostile] = got[0]!.cases;
    expect(quiet).toMatchObject({ name: 'a fatal stays quiet', line: '3' });
    expect(quiet!.failure).toBe(
      'broken.test.yaml:3:5 unexpected alert: fatal-anywhere at +0s key {"host.name":"db-1"} figures {}',
    );
    expect(info).toEqual({ name: 'an info stays quiet', line: '7', failure: undefined });
    expect(hostile!.name).toBe(HOSTILE_IN_XML);
    expect(got[1]!.cases[0]!.failure).toBe('unreadable.test.yaml:2:8 tests must be a list');
  });

  it('junit on the example rule tests: all pass, exit 0', () => {
    const r = drover(dir, ['rules', 'test', '--format', 'junit', EXAMPLES]);
    expect(r.code, r.stdout).toBe(0);
    const got = suites(parseXml(r.stdout));
    expect(got.length).toBeGreaterThanOrEqual(10);
    expect(got.every((s) => s.failures === 0 && s.tests > 0)).toBe(true);
  });

  it('github: an annotation per failing test case, exactly, with escaping', () => {
    const r = drover(dir, [
      'rules',
      'test',
      '--format',
      'github',
      'broken.test.yaml',
      'unreadable.test.yaml',
    ]);
    expect(r.code).toBe(1);
    const unexpected =
      'unexpected alert: fatal-anywhere at +0s key {"host.name":"db-1"} figures {}';
    // Node writes a lone surrogate as U+FFFD.
    const title = 'a<b&c]]>\u0001\uFFFD \t100%25%2Cx%3Ay%0D%0A%3A%3Aerror%3A%3Aend';
    expect(r.stdout).toBe(
      [
        `::error file=broken.test.yaml,line=3,col=5,title=a fatal stays quiet::${unexpected}`,
        `::error file=broken.test.yaml,line=11,col=5,title=${title}::${unexpected}`,
        '::error file=unreadable.test.yaml,line=2,col=8,title=drover rules test::tests must be a list',
        '',
      ].join('\n'),
    );
    expect(r.stderr).toBe('1 passed, 3 failed\n');
  });
});

describe('CI report writers', () => {
  it('junit escapes any name and message into well-formed XML that reads back', () => {
    const names = [
      HOSTILE,
      '<script>&amp;</script>',
      ']]>]]]]><![CDATA[x]]>',
      '"\'quotes\'"',
      '\u0000\u0008\u000B\u000C\u001F\uFFFE\uFFFF\uDC00\uD800x',
      'pair \uD83D\uDE00 ok',
    ];
    const xml = junitReport(
      'suite & <more>',
      names.map((n) => ({
        file: `${n}.yaml`,
        cases: [
          {
            name: n,
            file: `${n}.yaml`,
            line: 2,
            col: 3,
            failures: [{ line: 2, col: 3, message: n }],
            notes: [n],
          },
        ],
      })),
    );
    const root = parseXml(xml);
    expect(root.attrs.name).toBe('suite & <more>');
    const visible = (s: string) =>
      s.replace(
        /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\uD800-\uDFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g,
        (c) => `\\u${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`,
      );
    root.children.forEach((suite, i) => {
      const n = visible(names[i]!);
      const tc = suite.children[0]!;
      expect(tc.attrs.name).toBe(n);
      expect(tc.children[0]!.attrs.message).toBe(`${n}.yaml:2:3 ${n}`);
      expect(tc.children[0]!.text).toBe(`${n}.yaml:2:3 ${n}`);
      expect(tc.children[1]!.text).toBe(n);
    });
    expect(names[5]).toBe(visible(names[5]!));
  });

  it('the checker refuses what an XML parser refuses', () => {
    for (const bad of [
      '<a>\u0001</a>',
      '<a>\uD800</a>',
      '<a>]]></a>',
      '<a>&</a>',
      '<a b="<"/>',
      '<a><b></a>',
      '<a/><a/>',
    ])
      expect(() => parseXml(bad), bad).toThrow();
  });

  it('github escapes data and properties as the workflow-command parser expects', () => {
    expect(githubData('100%\r\n::x')).toBe('100%25%0D%0A::x');
    expect(githubProperty('a,b:c%\n')).toBe('a%2Cb%3Ac%25%0A');
    expect(
      githubAnnotation('warning', { file: 'r,1:x.yaml', line: 4, col: 2 }, 't:1,2', 'm\n%'),
    ).toBe('::warning file=r%2C1%3Ax.yaml,line=4,col=2,title=t%3A1%2C2::m%0A%25');
  });
});
