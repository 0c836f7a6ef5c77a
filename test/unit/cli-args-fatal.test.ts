/**
 * An error thrown outside a command's action (a timer, an event handler, a rejected promise nobody awaited) is one
 * line and exit 1, never a stack trace (cli/main.ts installFatalHandlers; RAWPOLL_DEBUG=1 adds the stack).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const MAIN = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js')).href;

function run(body: string, env: Record<string, string> = {}): { code: number | null; stderr: string } {
  const code = `import(${JSON.stringify(MAIN)}).then((m) => { m.installFatalHandlers(); ${body} });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { env: { ...process.env, RAWPOLL_DEBUG: '', ...env } });
  return { code: r.status, stderr: r.stderr.toString() };
}

test('a throw in a timer: "rawpoll: MESSAGE", exit 1, no stack', () => {
  const r = run("setTimeout(() => { throw new Error('boom in a timer'); }, 1);");
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'rawpoll: boom in a timer\n');
});

test('an unhandled rejection: the same', () => {
  const r = run("Promise.reject(new Error('nobody awaited me'));");
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'rawpoll: nobody awaited me\n');
});

test('a UsageError thrown late still exits 2 (the table is by class, wherever it is thrown)', () => {
  const errors = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'errors.js')).href;
  const r = run(`import(${JSON.stringify(errors)}).then((e) => setTimeout(() => { throw new e.UsageError("bad --x 'y': expected z"); }, 1));`);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, "rawpoll: bad --x 'y': expected z\n");
});

test('RAWPOLL_DEBUG=1 adds the stack for an error of no class of ours', () => {
  const r = run("setTimeout(() => { throw new Error('boom'); }, 1);", { RAWPOLL_DEBUG: '1' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^rawpoll: boom\nError: boom\n\s+at /);
});
