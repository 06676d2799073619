import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../pipeline/cli.ts';
import { CLI_DOCS_PATH, renderCliDocs } from '../../pipeline/cli-docs.ts';

/** The flags a usage text names: --name, and -x for short ones. */
function flagsIn(usage: string): Set<string> {
  return new Set([...usage.matchAll(/(?<![\w-])(--?[a-z][a-z-]*)/g)].map((m) => m[1]!));
}

describe('docs/cli.md', () => {
  it('is what npm run docs:cli generates from the commands (run it after changing a usage)', async () => {
    expect(readFileSync(CLI_DOCS_PATH, 'utf8')).toBe(await renderCliDocs());
  });

  it.each(COMMANDS.map((c) => [c.name, c] as const))(
    'drover %s: its usage names every flag its parser takes, and takes every flag it names',
    (_, command) => {
      const named = flagsIn(command.usage);
      const accepted = new Set(['--help', '-h']);
      for (const [name, option] of Object.entries(command.options)) {
        accepted.add(`--${name}`);
        expect(named, `--${name} is accepted but not in the usage`).toContain(`--${name}`);
        if (option.short) {
          accepted.add(`-${option.short}`);
          expect(named, `-${option.short} is accepted but not in the usage`).toContain(
            `-${option.short}`,
          );
        }
      }
      for (const flag of named) expect(accepted, `${flag} is in the usage only`).toContain(flag);
    },
  );
});
