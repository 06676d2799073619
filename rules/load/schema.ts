import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import { KINDS } from '../kinds/index.ts';
import type { KindDescriptor } from '../kinds/kind.ts';
import schema from '../schema.json' with { type: 'json' };
import { DURATIONS } from './checks.ts';
import { suggest } from './suggest.ts';
import { type FileContext, getIn, pathOf } from './yaml.ts';

/** A rule file against rules/schema.json, its errors worded for people. */
export const ALL_OPTIONS = Object.keys(schema.properties);

export const validateSchema = await schemaValidator();

/**
 * The compiled package has the validator as code, written by the build (see
 * schema-standalone.ts); from the sources it is compiled here, with the same options.
 */
async function schemaValidator(): Promise<ValidateFunction> {
  if (import.meta.url.endsWith('.js')) {
    const built = '../schema-validator.cjs';
    try {
      return ((await import(built)) as { default: ValidateFunction }).default;
    } catch (err) {
      // Not built (a build without its last step): compile it as the sources do.
      if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    }
  }
  const [{ Ajv2020 }, { SCHEMA_OPTIONS }] = await Promise.all([
    import('ajv/dist/2020.js'),
    import('../schema-standalone.ts'),
  ]);
  return new Ajv2020(SCHEMA_OPTIONS).compile(schema);
}

function kindOf(type: unknown): KindDescriptor | undefined {
  return typeof type === 'string' && Object.hasOwn(KINDS, type)
    ? (KINDS[type as keyof typeof KINDS] as KindDescriptor)
    : undefined;
}

export function reportSchemaErrors(
  ctx: FileContext,
  raw: Record<string, unknown>,
  errors: ErrorObject[],
): void {
  const seen = new Set<string>();
  for (const e of errors) {
    const path = pathOf(e.instancePath);
    // Conditions, durations and actions get clearer messages from the semantic checks;
    // the branches of anyOf are summed up by the anyOf error itself.
    if (path[0] === 'filter' || path[0] === 'actions' || DURATIONS.includes(String(path[0])))
      continue;
    if (e.keyword === 'oneOf' || e.keyword === 'if' || /\/anyOf\/\d+\//.test(e.schemaPath))
      continue;
    const where = path.length > 0 ? `"${path.join('.')}"` : '';
    let message: string;
    let onKey = false;
    let at = path;
    switch (e.keyword) {
      case 'additionalProperties': {
        const prop = String(e.params.additionalProperty);
        message = `unknown option "${prop}"${suggest(prop, ALL_OPTIONS)}`;
        at = [...path, prop];
        onKey = true;
        break;
      }
      case 'required': {
        const missing = String(e.params.missingProperty);
        message = raw.type ? `${String(raw.type)} rules need "${missing}"` : `missing "${missing}"`;
        at = raw.type ? ['type'] : [];
        break;
      }
      case 'anyOf':
        message = kindOf(raw.type)?.oneOf?.message ?? `${where} is not valid`;
        at = ['type'];
        break;
      case 'enum':
        message = `${where} must be one of ${(e.params.allowedValues as unknown[]).join(', ')}${typeof getIn(raw, path) === 'string' ? suggest(String(getIn(raw, path)), (e.params.allowedValues as unknown[]).map(String)) : ''}`;
        break;
      case 'type':
        message = `${where} must be ${article(String(e.params.type))}`;
        break;
      case 'pattern':
        message =
          path[0] === 'name'
            ? 'name must use only lowercase letters, digits, ".", "_" and "-"'
            : `${where} must match ${e.params.pattern}`;
        break;
      case 'minimum':
      case 'exclusiveMinimum':
        message = `${where} must be ${e.keyword === 'minimum' ? '≥' : '>'} ${e.params.limit}`;
        break;
      default:
        message = `${where} ${e.message ?? 'is not valid'}`.trim();
    }
    const key = `${at.join('.')}|${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    ctx.error(at, message, onKey);
  }
}

function article(type: string): string {
  const t = type.replace(/,/g, ' or ');
  return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`;
}
