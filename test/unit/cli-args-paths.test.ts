/**
 * Paths named on the command line, in the exit-code table's terms: not there or the wrong kind is bad usage (2);
 * there but refused is a runtime failure (1). cli/common.ts pathError, checkInputFile.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeError, UsageError } from '../../src/errors.js';
import { checkInputFile, pathError } from '../../src/cli/common.js';

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
