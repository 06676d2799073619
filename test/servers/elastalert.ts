import { ensurePythonVenv, run } from './common.ts';

/**
 * ElastAlert 2 from PyPI, in a venv under the cache
 * (`${XDG_CACHE_HOME:-~/.cache}/drover/elastalert/venv`), installed once: the ElastAlert
 * import tests check that their ElastAlert rule files are valid for ElastAlert itself
 * (test/servers/elastalert-validate.py). 2.19 is the last release for Python 3.11 (later
 * ones need 3.12); it imports pytz without declaring it, hence the second package.
 */
const REQUIREMENTS = ['elastalert2>=2.19,<2.20', 'pytz'];

/** The venv's python, with elastalert importable. */
export async function ensureElastalert(): Promise<string> {
  const python = await ensurePythonVenv('elastalert', REQUIREMENTS);
  run(python, ['-c', 'import elastalert.loaders'], process.cwd());
  return python;
}
