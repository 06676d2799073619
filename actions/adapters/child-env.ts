/**
 * The environment a child of Drover starts with (exec commands, supervised replicas):
 * an allowlist of the variables a program needs to run at all, never Drover's own
 * (DROVER_TOKEN, AWS_*, ELASTICSEARCH_*, KAFKA_*...). What else a child needs is named
 * in its configuration: `env` (values) or `inheritEnv` (names copied from Drover's
 * environment), and the adapter adds the DROVER_* variables of the action.
 */

/** Copied from Drover's environment when set. */
export const INHERITED_ENV: readonly string[] = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TMPDIR',
];
/** Every `LC_*` locale variable is copied too. */
const LOCALE = /^LC_[A-Z_]+$/;

/**
 * Drover's own credentials and endpoints: refused in `inheritEnv`, so no configuration
 * hands them to a child by name. (A value written into `env` is the operator's choice.)
 */
const DROVER_SECRETS = /^(DROVER_|AWS_|ELASTICSEARCH_|KAFKA_|KUBECONFIG$)/;

/** Checks an `inheritEnv` option at start-up. */
export function validateInheritEnv(where: string, names: unknown): void {
  if (names === undefined) return;
  if (!Array.isArray(names) || names.some((n) => typeof n !== 'string' || !/^\w+$/.test(n)))
    throw new Error(`${where}: inheritEnv must be a list of variable names`);
  for (const n of names as string[])
    if (DROVER_SECRETS.test(n))
      throw new Error(
        `${where}: inheritEnv may not pass Drover's own ${n} to a child; write the value the child needs into env`,
      );
}

/**
 * The environment for a child: the allowlist (and `inherit`) from `from`, then the
 * configured `env`, then the adapter's own variables for the action.
 */
export function childEnv(
  configured: Record<string, string> | undefined,
  own: Record<string, string>,
  inherit: readonly string[] = [],
  from: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(from))
    if (
      value !== undefined &&
      (INHERITED_ENV.includes(name) || LOCALE.test(name) || inherit.includes(name))
    )
      env[name] = value;
  return { ...env, ...configured, ...own };
}
