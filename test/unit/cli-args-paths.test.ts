/**
 * Paths named on the command line, in the exit-code table's terms: not there or the wrong kind is bad usage (2);
 * there but refused is a runtime failure (1). cli/common.ts pathError, checkInputFile.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeError, UsageError } from '../../src/errors.js';
import { checkInputFile, checkOutputDir, checkOutputFile, pathError } from '../../src/cli/common.js';

function usage(fn: () => unknown, message: string): void {
  assert.throws(fn, (e: unknown) => e instanceof UsageError && e.message === message && e.exitCode === 2);
}

const tmp = mkdtempSync(join(tmpdir(), 'rawpoll-cli-paths-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test('checkInputFile: a missing file, a directory, a path through a file: UsageError naming the flag and path', () => {
  const file = join(tmp, 'log.txt');
  writeFileSync(file, 'x\n');
  mkdirSync(join(tmp, 'dir'));
  checkInputFile(file, '--log');
  checkInputFile('-', '--log');
  checkInputFile('/dev/null', '--log'); // a device is read like a file
  const cases: [string, string][] = [
    [join(tmp, 'nope'), `bad --log '${join(tmp, 'nope')}': no such file or directory`],
    [join(tmp, 'dir'), `bad --log '${join(tmp, 'dir')}': a directory, not a file`],
    [join(file, 'x'), `bad --log '${join(file, 'x')}': a part of the path is not a directory`],
  ];
  for (const [p, msg] of cases) {
    assert.throws(() => checkInputFile(p, '--log'), (e: unknown) => e instanceof UsageError && e.message === msg && e.exitCode === 2);
  }
});

test('pathError: refused (EACCES, EROFS, ENOSPC) is a RuntimeError, exit 1; not there is a UsageError, exit 2', () => {
  const err = (code: string) => Object.assign(new Error(code), { code });
  for (const code of ['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EIO']) {
    const e = pathError(err(code), '--dir', '/x');
    assert.ok(e instanceof RuntimeError, code);
    assert.equal(e.message, `cannot use --dir '/x': ${code}`);
  }
  for (const code of ['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG']) assert.ok(pathError(err(code), '--dir', '/x') instanceof UsageError, code);
});

test('checkOutputFile: the directory must be there (not created), the path must not be a directory', () => {
  const d = join(tmp, 'state');
  mkdirSync(d);
  checkOutputFile(join(d, 'armed'), '--one-shot');
  usage(() => checkOutputFile(join(tmp, 'no', 'such', 'armed'), '--one-shot'),
    `bad --one-shot '${join(tmp, 'no', 'such', 'armed')}': no directory ${join(tmp, 'no', 'such')} (rawpoll does not create it)`);
  usage(() => checkOutputFile(d, '--state'), `bad --state '${d}': a directory, not a file`);
  assert.ok(!existsSync(join(tmp, 'no')), 'nothing created');
});

test('checkOutputDir: made with its parents when asked, else must be there; a file is bad usage (2); not writable is 1', () => {
  const d = join(tmp, 'out', 'deeper');
  usage(() => checkOutputDir(d, '--dir'), `bad --dir '${d}': no such file or directory`);
  assert.ok(!existsSync(join(tmp, 'out')), 'nothing created without create');
  checkOutputDir(d, '--dir', { create: true });
  assert.ok(statSync(d).isDirectory());
  checkOutputDir(d, '--dir'); // there already: fine
  const f = join(tmp, 'plain');
  writeFileSync(f, '');
  usage(() => checkOutputDir(f, '--dir'), `bad --dir '${f}': a file, not a directory`);
  usage(() => checkOutputDir(f, '--dir', { create: true }), `bad --dir '${f}': a file is in the way (not a directory)`);
  usage(() => checkOutputDir(join(f, 'sub'), '--dir', { create: true }), `bad --dir '${join(f, 'sub')}': a file is in the way (not a directory)`);
  // Read-only for its owner: root passes access(W_OK) anyway, so this part runs for other users only.
  if (process.getuid && process.getuid() !== 0) {
    const ro = join(tmp, 'ro');
    mkdirSync(ro, 0o555);
    assert.throws(() => checkOutputDir(ro, '--dir'), (e: unknown) => e instanceof RuntimeError && /EACCES/.test(e.message));
  }
});
