import { expect, it, vi } from 'vitest';
import { COMMANDS, main } from '../../pipeline/cli.ts';
import { EXIT_FINDINGS } from '../../pipeline/commands/common.ts';

/**
 * A command that fails with something other than a usage error is reported as Drover's
 * own failure, whatever was thrown: kafkajs throws errors whose `code` is a number, and
 * reading it as a string used to hide the real error behind a TypeError.
 */
it('a failure whose code is not a string, or that is not an Error, is logged and exits 1', async () => {
  const thrown: unknown[] = [
    Object.assign(new Error('the broker refused'), { code: 3 }),
    null,
    'a string',
  ];
  const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    for (const value of thrown) {
      COMMANDS.push({
        name: 'zz-fails',
        summary: 'fails',
        usage: 'drover zz-fails',
        options: {},
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the point: not always an Error
        run: () => Promise.reject(value),
      });
      try {
        expect(await main(['zz-fails'])).toBe(EXIT_FINDINGS);
      } finally {
        COMMANDS.pop();
      }
    }
  } finally {
    stdout.mockRestore();
  }
});
