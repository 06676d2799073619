import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import type { Served } from './drover.ts';

/**
 * When the running test fails, writes each process's log (its stderr: the JSON lines
 * `drover serve` logged) to `dir/<name>.log` and prints where, so that a failure seen
 * once (a flaky run under load) can be read afterwards. With DROVER_TEST_KEEP_LOGS=1 in
 * the environment it keeps them after a passing run too (to compare with a failed one).
 * Call it inside the test, once the processes have started.
 */
export function keepLogsOnFailure(dir: string, served: Record<string, Served>): void {
  onTestFinished(({ task }) => {
    if (task.result?.state !== 'fail' && !process.env.DROVER_TEST_KEEP_LOGS) return;
    const files = Object.entries(served).map(([name, s]) => {
      const file = join(dir, `${name}.log`);
      writeFileSync(file, s.log());
      return file;
    });
    console.log(`the processes' logs: ${files.join(' ')}`);
  });
}
