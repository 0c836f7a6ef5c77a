/**
 * The JSON Schemas in schemas/ loaded into one ajv (draft 2020-12, strict mode, allErrors, each schema added first so
 * $refs between them resolve), and the checks the tests make with it: a failure names the schema, prints ajv's errors
 * and the offending document.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ROOT } from './lab.js';

export const SCHEMAS = join(ROOT, 'schemas');
export const SCHEMA_BASE = 'https://rawpoll.invalid/schemas/';

/** The schema files, sorted (`<name>.schema.json`). */
export const schemaFiles = (): string[] => readdirSync(SCHEMAS).filter((n) => n.endsWith('.schema.json')).sort();

/** A fresh ajv with every schema in schemas/ added. */
export function ajvWithAll(): InstanceType<typeof Ajv2020> {
  const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
  for (const f of schemaFiles()) ajv.addSchema(JSON.parse(readFileSync(join(SCHEMAS, f), 'utf8')));
  return ajv;
}

// Made at the first check, not on import: a broken schema fails that test, not the loading of every file importing this.
let shared: InstanceType<typeof Ajv2020> | undefined;

/** Validates `doc` against schemas/<name>.schema.json (failing the test if it does not); returns it. */
export function valid<T = Record<string, unknown>>(name: string, doc: unknown): T {
  const ajv = (shared ??= ajvWithAll());
  const v = ajv.getSchema(`${SCHEMA_BASE}${name}.schema.json`);
  assert.ok(v, `no schema ${name}.schema.json in ${SCHEMAS}`);
  if (!v(doc)) assert.fail(`${name}.schema.json rejects:\n${ajv.errorsText(v.errors, { separator: '\n' })}\n${JSON.stringify(doc).slice(0, 2000)}`);
  return doc as T;
}

/** Parses one line of `--json` output (failing the test if it is not one JSON document) and validates it as valid() does. */
export function validLine<T = Record<string, unknown>>(name: string, line: string): T {
  let doc: unknown;
  try {
    doc = JSON.parse(line);
  } catch {
    assert.fail(`${name}: output is not one JSON document: ${JSON.stringify(line.slice(0, 500))}`);
  }
  return valid<T>(name, doc);
}
