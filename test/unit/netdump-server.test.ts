import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sanitizeComponent, sanitizeHeraldPath } from '../../src/rx/netdumpd.js';

test('herald paths reduce to safe relative components', () => {
  assert.deepEqual(sanitizeHeraldPath(null), []);
  assert.deepEqual(sanitizeHeraldPath(''), []);
  assert.deepEqual(sanitizeHeraldPath('host7/'), ['host7']);
  assert.deepEqual(sanitizeHeraldPath('crash/host7'), ['crash', 'host7']);
  assert.deepEqual(sanitizeHeraldPath('../../etc'), ['etc']);
  assert.deepEqual(sanitizeHeraldPath('/etc/passwd'), ['etc', 'passwd']);
  assert.deepEqual(sanitizeHeraldPath('a/./b/../c'), ['a', 'b', 'c']);
  assert.deepEqual(sanitizeHeraldPath('..\\..\\win'), ['win']);
  assert.deepEqual(sanitizeHeraldPath('sp ace/$(rm)'), ['sp_ace', '__rm_']);
  assert.equal(sanitizeHeraldPath('a/'.repeat(40)).length, 16);
});

test('file name components never become "." or ".." or contain a separator', () => {
  assert.equal(sanitizeComponent('10.0.0.1'), '10.0.0.1');
  assert.equal(sanitizeComponent('..'), '_');
  assert.equal(sanitizeComponent('.'), '_');
  assert.equal(sanitizeComponent(''), '_');
  assert.equal(sanitizeComponent('a/b'), 'a_b');
  assert.equal(sanitizeComponent('x\0y'), 'x_y');
});
