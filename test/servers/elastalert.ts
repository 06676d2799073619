import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { run, withInstallLock } from './common.ts';

/**
 * ElastAlert 2 from PyPI, in a virtualenv outside the repository
 * (`${XDG_CACHE_HOME:-~/.cache}/drover/elastalert-venv`), installed once as moto is: the
 * ElastAlert import tests check that their ElastAlert rule files are valid for ElastAlert
 * itself (test/servers/elastalert-validate.py). 2.19 is the last release for Python 3.11
 * (later ones need 3.12); it imports pytz without declaring it, hence the second package.
 */
const REQUIREMENTS = ['elastalert2>=2.19,<2.20', 'pytz'];

function venvDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'drover', 'elastalert-venv');
}

/** The venv's python, with elastalert importable. */
export async function ensureElastalert(): Promise<string> {
  const venv = venvDir();
  const python = join(venv, 'bin', 'python');
  const marker = join(venv, '.drover-installed');
  const wanted = `${REQUIREMENTS.join('\n')}\n`;
  const installed = () => existsSync(marker) && readFileSync(marker, 'utf8') === wanted;
  if (installed()) return python;
  mkdirSync(dirname(venv), { recursive: true });
  await withInstallLock(`${venv}.lock`, () => {
    if (installed()) return;
    if (!existsSync(python)) run('python3', ['-m', 'venv', venv], dirname(venv));
    run(
      python,
      ['-m', 'pip', 'install', '-q', '--disable-pip-version-check', ...REQUIREMENTS],
      dirname(venv),
    );
    run(python, ['-c', 'import elastalert.loaders'], dirname(venv));
    writeFileSync(marker, wanted);
  });
  return python;
}
