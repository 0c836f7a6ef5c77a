/**
 * --metrics [IP:]PORT, --hook PROG and --hook-timeout S as the receivers read them (rx/metrics.ts, rx/hook.ts), the
 * hook runner's bounds (time limit with its process group, the concurrency cap), and the registry's text: no network.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../../src/errors.js';
import { parseMetricsAddress, ReceiverMetrics } from '../../src/rx/metrics.js';
import { checkHookProgram, HookRunner, parseHookTimeout, type HookEvent } from '../../src/rx/hook.js';

const tmp = mkdtempSync(join(tmpdir(), 'rp-hookargs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function script(name: string, body: string, mode = 0o755): string {
  const p = join(tmp, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, mode);
  return p;
}

test('--metrics: PORT, IP:PORT and [IPv6]:PORT; anything else is a usage error naming the value', () => {
  assert.deepEqual(parseMetricsAddress('9100'), { host: undefined, port: 9100 });
  assert.deepEqual(parseMetricsAddress('10.0.0.9:9100'), { host: '10.0.0.9', port: 9100 });
  assert.deepEqual(parseMetricsAddress('[::1]:9100'), { host: '::1', port: 9100 });
  assert.deepEqual(parseMetricsAddress(' 1 '), { host: undefined, port: 1 });
  for (const bad of ['0', '65536', 'x', '10.0.0.300:9100', '10.0.0.9:', ':9100', '[zz]:9100', '9100:10.0.0.9', '', '-1', '91OO']) {
    assert.throws(() => parseMetricsAddress(bad), (e: Error) => {
      assert.ok(e instanceof UsageError, `${bad}: ${e}`);
      assert.ok(e.message.startsWith(`bad --metrics '${bad}': expected PORT`), e.message);
      assert.match(e.message, /PORT 1-65535/);
      return true;
    });
  }
});

test('--hook-timeout: seconds above 0 and at most a day, fractions allowed', () => {
  assert.equal(parseHookTimeout('60'), 60);
  assert.equal(parseHookTimeout('0.5'), 0.5);
  assert.equal(parseHookTimeout('86400'), 86400);
  for (const bad of ['0', '86401', '-1', '1e3', 'abc', '', '1s']) {
    assert.throws(() => parseHookTimeout(bad), (e: Error) => e instanceof UsageError &&
      e.message === `bad --hook-timeout '${bad}': expected seconds, more than 0, at most 86400`);
  }
});

test('--hook: a missing, non-executable or non-file program is refused at start, naming it', () => {
  const ok = script('ok.sh', 'exit 0');
  assert.equal(checkHookProgram(ok), ok);
  const noexec = script('noexec.sh', 'exit 0', 0o644);
  const dir = join(tmp, 'a-dir');
  mkdirSync(dir);
  const cases: [string, RegExp][] = [
    [join(tmp, 'missing.sh'), /: no such file \(give the path of an executable program\)$/],
    [noexec, /: not executable \(chmod \+x it/],
    [dir, /: not a regular file/],
  ];
  for (const [p, why] of cases) {
    assert.throws(() => checkHookProgram(p), (e: Error) => {
      assert.ok(e instanceof UsageError);
      assert.ok(e.message.startsWith(`bad --hook '${p}'`), e.message);
      assert.match(e.message, why);
      return true;
    });
  }
});

function runner(prog: string, o: { timeoutMs?: number; maxConcurrent?: number } = {}): { r: HookRunner; events: HookEvent[] } {
  const events: HookEvent[] = [];
  return { r: new HookRunner({ prog, ...o, onEvent: (e) => events.push(e) }), events };
}

test('hook runner: arguments reach the program as given (no shell), exit codes are reported', async () => {
  const out = join(tmp, 'argv.txt');
  const prog = script('argv.sh', `for a in "$@"; do printf '%s\\n' "$a"; done > "${out}"; echo "$RAWPOLL_X" >> "${out}"; exit "$2"`);
  const { r, events } = runner(prog);
  r.run(['one two', '3', '$(touch /tmp/never)', ''], { RAWPOLL_X: 'env-ok' });
  assert.equal(r.running, 1, 'run() returns before the program ends');
  await r.close();
  assert.equal(readFileSync(out, 'utf8'), 'one two\n3\n$(touch /tmp/never)\n\nenv-ok\n');
  assert.equal(events.length, 1);
  assert.equal(events[0].result, 'failed');
  assert.equal(events[0].code, 3);
  const { r: r2, events: e2 } = runner(script('zero.sh', 'exit 0'));
  r2.run([]);
  await r2.close();
  assert.equal(e2[0].result, 'ok');
  assert.equal(e2[0].code, 0);
  assert.deepEqual(r.counts, { ok: 0, failed: 1, timeout: 0, skipped: 0, error: 0 });
});

test('hook runner: past its time limit the hook and what it started are killed; over the cap one is skipped', async () => {
  const pidFile = join(tmp, 'sleep.pid');
  // The shell starts a sleep in the background and waits: killing only the shell would leave the sleep behind.
  const prog = script('slow.sh', `sleep 30 & echo $! > "${pidFile}"; wait`);
  const { r, events } = runner(prog, { timeoutMs: 300, maxConcurrent: 1 });
  const t0 = Date.now();
  r.run(['a']);
  r.run(['b']);
  assert.equal(events.length, 1);
  assert.equal(events[0].result, 'skipped');
  assert.equal(events[0].running, 1);
  assert.deepEqual(events[0].args, ['b']);
  await r.close();
  const ms = Date.now() - t0;
  assert.ok(ms >= 300 && ms < 5000, `ended after ${ms} ms`);
  assert.equal(events[1].result, 'timeout');
  const sleeper = Number(readFileSync(pidFile, 'utf8'));
  // Reaped, or a zombie waiting for init: either way no longer running (a signal takes a moment to land).
  const alive = () => existsSync(`/proc/${sleeper}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${sleeper}/status`, 'utf8'));
  for (let i = 0; i < 50 && alive(); i++) await new Promise((res) => setTimeout(res, 20));
  assert.equal(alive(), false, `the hook's sleep ${sleeper} outlived it`);
  assert.deepEqual(r.counts, { ok: 0, failed: 0, timeout: 1, skipped: 1, error: 0 });
});

test('metrics registry: per instance, rawpoll_ names, HELP and TYPE, values read at scrape time', async () => {
  let n = 1;
  const a = new ReceiverMetrics({ processMetrics: false });
  const b = new ReceiverMetrics({ processMetrics: false });
  for (const m of [a, b]) m.counter('rawpoll_test_total', 'A test counter', ['reason'], () => [[{ reason: 'x' }, n]]);
  n = 7;
  const text = await a.text();
  assert.match(text, /^# HELP rawpoll_test_total A test counter$/m);
  assert.match(text, /^# TYPE rawpoll_test_total counter$/m);
  assert.match(text, /^rawpoll_test_total\{reason="x"\} 7$/m);
  n = 9;
  assert.match(await b.text(), /^rawpoll_test_total\{reason="x"\} 9$/m, 'a second registry in one process');
  const withProcess = await new ReceiverMetrics().text();
  assert.match(withProcess, /^rawpoll_process_resident_memory_bytes \d+/m);
  assert.ok(withProcess.split('\n').filter((l) => l && !l.startsWith('#')).every((l) => l.startsWith('rawpoll_')));
});

test('hook runner: a program that cannot be started (gone since the start-up check) is one error, counted once', async () => {
  const gone = join(tmp, 'gone.sh');
  const { r, events } = runner(gone);
  r.run(['x']);
  await r.close();
  assert.equal(events.length, 1);
  assert.equal(events[0].result, 'error');
  assert.match(events[0].error!, /ENOENT/);
  assert.equal(r.running, 0);
  assert.deepEqual(r.counts, { ok: 0, failed: 0, timeout: 0, skipped: 0, error: 1 });
});
