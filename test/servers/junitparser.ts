import { ensurePythonVenv } from './common.ts';

/**
 * junitparser (PyPI), a JUnit XML reader used by CI tooling, in a venv under the cache
 * (`${XDG_CACHE_HOME:-~/.cache}/drover/junitparser/venv`), installed once: the tests read
 * Drover's --format junit output with it. Returns the venv's python.
 */
const REQUIREMENTS = ['junitparser>=5,<6'];

export function ensureJunitparser(): Promise<string> {
  return ensurePythonVenv('junitparser', REQUIREMENTS);
}
