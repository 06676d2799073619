/**
 * docs/cli.md, generated from the commands' own definitions (their summary and usage text in
 * pipeline/cli.ts). `npm run docs:cli` rewrites it; test/pipeline/cli-docs.test.ts fails when
 * the file and the commands drift apart, or when a command's parser takes a flag its usage
 * text does not name.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { COMMANDS } from './cli.ts';

/** The page as the generator writes it: laid out by Prettier, as every file in the repository. */
export async function renderCliDocs(): Promise<string> {
  const prettier = await import('prettier');
  const options = await prettier.resolveConfig(CLI_DOCS_PATH);
  return prettier.format(renderCliMarkdown(), { ...options, parser: 'markdown' });
}

export function renderCliMarkdown(): string {
  const parts = [
    '# drover command line',
    '',
    '<!-- Generated from pipeline/cli.ts by `npm run docs:cli`; edit the usage text there. -->',
    '',
    'Exit codes: 0 success, 1 findings or failures, 2 usage errors.',
    '',
    '| command | what it does |',
    '|---|---|',
    ...COMMANDS.map((c) => `| [\`drover ${c.name}\`](#${anchor(c.name)}) | ${c.summary} |`),
  ];
  for (const c of COMMANDS)
    parts.push('', `## drover ${c.name}`, '', c.summary, '', '```text', c.usage, '```');
  return `${parts.join('\n')}\n`;
}

function anchor(name: string): string {
  return `drover-${name.replaceAll(' ', '-')}`;
}

export const CLI_DOCS_PATH = join(import.meta.dirname, '..', 'docs', 'cli.md');

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  writeFileSync(CLI_DOCS_PATH, await renderCliDocs());
  process.stdout.write(`wrote ${CLI_DOCS_PATH}\n`);
}
