/**
 * The JSON Schemas in schemas/ themselves: each compiles under ajv's strict mode (draft 2020-12), closes every object
 * (additionalProperties: false), describes every field, and is used by the integration test that validates the real
 * command's output (test/integration/json-schemas.test.ts) — a schema no test checks would drift from the output.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/lab.js';
import { ajvWithAll, SCHEMAS, schemaFiles } from '../helpers/schemas.js';

const files = schemaFiles();
type Schema = Record<string, unknown>;
const schemas = new Map<string, Schema>(files.map((f) => [f, JSON.parse(readFileSync(join(SCHEMAS, f), 'utf8')) as Schema]));

/** Every subschema with its JSON pointer. */
function* walk(s: unknown, at: string): Generator<[Schema, string]> {
  if (Array.isArray(s)) {
    for (let i = 0; i < s.length; i++) yield* walk(s[i], `${at}/${i}`);
    return;
  }
  if (s === null || typeof s !== 'object') return;
  yield [s as Schema, at];
  for (const [k, v] of Object.entries(s)) if (k !== 'const' && k !== 'enum') yield* walk(v, `${at}/${k}`);
}

describe('schemas/*.schema.json', () => {
  test('there are schemas, one per output, named <command>.schema.json with a matching $id', () => {
    assert.ok(files.length >= 7, files.join(', '));
    for (const [f, s] of schemas) {
      assert.equal(s.$schema, 'https://json-schema.org/draft/2020-12/schema', f);
      assert.equal(s.$id, `https://rawpoll.invalid/schemas/${f}`, f);
      assert.equal(typeof s.title, 'string', `${f}: title`);
      assert.equal(typeof s.description, 'string', `${f}: description`);
    }
  });

  test('each compiles in strict mode, its $refs resolved', () => {
    const ajv = ajvWithAll();
    for (const f of files) assert.ok(ajv.getSchema(`https://rawpoll.invalid/schemas/${f}`), `${f} did not compile`);
  });

  test('every object is closed and every field is described', () => {
    for (const [f, s] of schemas) {
      for (const [sub, at] of walk(s, '#')) {
        // An if/then's `properties` picks out a field of the object around it; it describes no object of its own.
        if (sub.properties !== undefined && !/\/(if|then)$/.test(at)) {
          assert.equal(sub.additionalProperties, false, `${f} ${at}: an object that allows any other field`);
          for (const [k, p] of Object.entries(sub.properties as Record<string, Schema>)) {
            assert.ok(typeof p.description === 'string' || typeof p.$ref === 'string', `${f} ${at}/properties/${k}: no description`);
          }
        }
      }
    }
  });

  test('each is used by the integration test that validates the real output', () => {
    const src = readFileSync(join(ROOT, 'test', 'integration', 'json-schemas.test.ts'), 'utf8');
    for (const f of files) {
      const name = f.replace(/\.schema\.json$/, '');
      assert.ok(new RegExp(`valid(<[^>]*>)?\\('${name}'`).test(src),
        `${f} is checked by no test: add a valid('${name}', …) call to test/integration/json-schemas.test.ts`);
    }
  });

  test('they reject what a script could not rely on: an unknown field, a missing field, a wrong type', () => {
    const arp = ajvWithAll().getSchema('https://rawpoll.invalid/schemas/arp.schema.json')!;
    const good = { ip: '10.0.0.2', mac: '02:00:00:00:00:02', via: 'direct', nextHop: '10.0.0.2', ms: 0.5, tries: 1, iface: 'veth0' };
    assert.ok(arp(good), JSON.stringify(arp.errors));
    assert.equal(arp({ ...good, extra: 1 }), false, 'an unknown field');
    const { tries: _tries, ...missing } = good;
    assert.equal(arp(missing), false, 'a missing field');
    assert.equal(arp({ ...good, ms: '0.5' }), false, 'a number as a string');
    assert.ok(arp({ ...good, via: 'gateway', nextHop: '10.0.0.254' }), 'via: gateway');
    assert.equal(arp({ ...good, via: '10.0.0.254' }), false, "via: neither 'direct' nor 'gateway'");
    assert.equal(arp({ ...good, nextHop: 'gw' }), false, 'nextHop: not an address');
  });
});
