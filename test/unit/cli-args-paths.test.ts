/**
 * Paths named on the command line, in the exit-code table's terms: not there or the wrong kind is bad usage (2);
 * there but refused is a runtime failure (1). cli/common.ts pathError, checkInputFile, checkOutputFile, checkWritableDir.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RuntimeError, UsageError } from '../../src/errors.js';
import { checkInputFile, checkWritableDir, checkOutputFile, pathError } from '../../src/cli/common.js';

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

test('checkWritableDir: not there is bad usage unless create (then its nearest ancestor is probed); a file is 2; refused is 1; nothing left behind', () => {
  const d = join(tmp, 'out', 'deeper');
  usage(() => checkWritableDir(d, '--dir'), `bad --dir '${d}': no such directory (create it first)`);
  checkWritableDir(d, '--dir', { create: true }); // tmp is writable: collect may make out/deeper
  assert.ok(!existsSync(join(tmp, 'out')), 'a check creates nothing');
  mkdirSync(d, { recursive: true });
  checkWritableDir(d, '--dir');
  assert.deepEqual(readdirSync(d), [], 'the probe file is removed');
  const f = join(tmp, 'plain');
  writeFileSync(f, '');
  usage(() => checkWritableDir(f, '--dir'), `bad --dir '${f}': a file, not a directory`);
  usage(() => checkWritableDir(join(f, 'sub'), '--dir', { create: true }), `bad --dir '${join(f, 'sub')}': a part of the path is not a directory`);
  // Refused: a file can't be created. As root, permissions don't refuse; an immutable directory does (chattr +i),
  // where the file system allows it; otherwise a non-root user's read-only directory.
  const ro = join(tmp, 'ro');
  mkdirSync(ro, 0o555);
  const immutable = process.getuid?.() === 0 && spawnSync('chattr', ['+i', ro]).status === 0;
  try {
    if (immutable || process.getuid?.() !== 0) {
      assert.throws(() => checkWritableDir(ro, '--dir'), (e: unknown) => e instanceof RuntimeError &&
        new RegExp(`^--dir ${ro} is not writable \\((EACCES|EPERM)\\); nothing was started$`).test((e as Error).message));
    }
  } finally {
    if (immutable) spawnSync('chattr', ['-i', ro]);
  }
});
