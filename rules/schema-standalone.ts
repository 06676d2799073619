/**
 * The rule schema's validator as code, written by the build next to the compiled rules
 * (dist/rules/schema-validator.cjs: CommonJS, as Ajv's
 * standalone code requires its runtime helpers): compiling the schema with Ajv at every start took
 * most of `drover rules lint`'s time. The sources (tests, tsx) compile it at load instead;
 * both are the same Ajv with the same options (SCHEMA_OPTIONS).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import standaloneCode from 'ajv/dist/standalone/index.js';
import schema from './schema.json' with { type: 'json' };

export const SCHEMA_OPTIONS = { allErrors: true, strict: false } as const;

export function writeStandaloneValidator(file: string): void {
  const ajv = new Ajv2020({ ...SCHEMA_OPTIONS, code: { source: true } });
  writeFileSync(file, standaloneCode.default(ajv, ajv.compile(schema)));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href)
  writeStandaloneValidator(join(import.meta.dirname, 'schema-validator.cjs'));
