import { pathToFileURL } from 'node:url';
import { isAbsolute, resolve } from 'node:path';
import awsAsg from './aws-asg.ts';
import exec from './exec.ts';
import kubernetes from './kubernetes.ts';
import processFactory from './process.ts';
import type { Adapter, AdapterFactory } from './types.ts';
import webhook from './webhook.ts';

/**
 * Adapters by type. The built-in ones are here; a third party ships one as an npm
 * package or a local module whose default export is an AdapterFactory, and names it in
 * the config as `type: "@acme/drover-nomad"` or `type: "./adapters/nomad.js"`.
 */
export const BUILT_IN_ADAPTERS: Readonly<Record<string, AdapterFactory>> = {
  [processFactory.type]: processFactory,
  [webhook.type]: webhook,
  [exec.type]: exec,
  [kubernetes.type]: kubernetes,
  [awsAsg.type]: awsAsg,
};

export async function loadAdapterFactory(
  type: string,
  baseDir = process.cwd(),
): Promise<AdapterFactory> {
  const builtIn = BUILT_IN_ADAPTERS[type];
  if (builtIn) return builtIn;
  const specifier =
    type.startsWith('.') || isAbsolute(type) ? pathToFileURL(resolve(baseDir, type)).href : type;
  let mod: { default?: unknown };
  try {
    mod = (await import(specifier)) as { default?: unknown };
  } catch (err) {
    throw new Error(
      `adapter type "${type}" is neither built in (${Object.keys(BUILT_IN_ADAPTERS).join(', ')}) nor a module that loads: ${(err as Error).message}`,
    );
  }
  const factory = mod.default as AdapterFactory | undefined;
  if (!factory || typeof factory.create !== 'function' || typeof factory.type !== 'string') {
    throw new Error(`module "${type}" does not export default { type, create(name, options) }`);
  }
  return factory;
}

/**
 * Creates the configured adapter instances (name → `{ type, ...options }`). An adapter
 * that cannot be created fails the whole set with its name in the message, and the
 * ones already created are closed again.
 */
export async function createAdapters(
  config: Record<string, { type: string; [option: string]: unknown }>,
  baseDir?: string,
): Promise<Map<string, Adapter>> {
  const adapters = new Map<string, Adapter>();
  try {
    for (const [name, entry] of Object.entries(config)) {
      if (!entry || typeof entry.type !== 'string' || !entry.type)
        throw new Error('needs a type (a built-in adapter, a package or a module path)');
      const { type, ...options } = entry;
      try {
        const factory = await loadAdapterFactory(type, baseDir);
        adapters.set(name, await factory.create(name, options));
      } catch (err) {
        throw new Error(`adapter ${name}: ${(err as Error).message}`, { cause: err });
      }
    }
  } catch (err) {
    await Promise.allSettled([...adapters.values()].map((a) => a.close?.() ?? Promise.resolve()));
    throw err;
  }
  return adapters;
}
