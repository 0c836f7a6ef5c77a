/**
 * --hook on netdump-server and collect, in namespaces this file creates: real dumps from rawpoll netdump and a real
 * report from rawpoll oops, and a hook script (written here) that records its argv into a file. netdump-server's hook
 * gets netdumpd -i's arguments (reason, client, hostname, info, vmcore) after a complete dump and after one whose
 * client was killed mid-dump; a hook that outlives --hook-timeout is killed (with the sleep it started) and logged
 * while the next dump is received; collect's hook gets the report and sidecar paths.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { labsForThisFile, nsRun, rawpoll, rawpollAsync, RAWPOLL, startRawpoll, waitFor } from '../helpers/lab.js';

const { tmp, hosts } = labsForThisFile('rp-hooks-');
/** A sleep no other process on this machine runs: pgrep finds only ours. */
const SLEEP = `29.${process.pid % 1000}`;

/**
 * The hook: one file per call in `calls/` holding its arguments, one a line, then $RAWPOLL_DUMP_STATUS. If the file
 * `slow` exists, the first call to see it removes it and sleeps (in a child, as a real script would) past any limit.
 */
function hookScript(dir: string): string {
  mkdirSync(join(dir, 'calls'), { recursive: true });
  const p = join(dir, 'hook.sh');
  writeFileSync(p, `#!/bin/sh
n="${dir}/calls/$(date +%s%N).$$"
{ for a in "$@"; do printf '%s\\n' "$a"; done; printf '%s\\n' "$RAWPOLL_DUMP_STATUS"; } > "$n.tmp" && mv "$n.tmp" "$n"
if rm "${dir}/slow" 2>/dev/null; then sleep ${SLEEP} & wait; fi
exit 0
`);
  chmodSync(p, 0o755);
  return p;
}

/** The recorded calls, oldest first, each its lines. */
function calls(dir: string): string[][] {
  return readdirSync(join(dir, 'calls')).filter((f) => !f.endsWith('.tmp')).sort()
    .map((f) => readFileSync(join(dir, 'calls', f), 'utf8').split('\n').slice(0, -1));
}

function dumpFile(name: string, size: number): string {
  const f = join(tmp, name);
  writeFileSync(f, randomBytes(size));
  return f;
}

test('netdump-server --hook: netdumpd\'s arguments after a complete dump and a failed one; a hook past --hook-timeout is killed while the next dump comes in', async () => {
  const h = hosts();
  const dir = join(tmp, 'nd');
  const hk = join(tmp, 'nd-hook');
  mkdirSync(dir);
  const prog = hookScript(hk);

  // Refused at start, naming the program: missing, and not executable.
  const missing = rawpoll(h.b, ['netdump-server', '--dir', dir, '--hook', join(hk, 'nope.sh')]);
  assert.equal(missing.code, 2);
  assert.equal(missing.stderr.trim(), `rawpoll: bad --hook '${join(hk, 'nope.sh')}': no such file (give the path of an executable program)`);
  const plain = join(hk, 'plain.sh');
  writeFileSync(plain, '#!/bin/sh\n');
  const noexec = rawpoll(h.b, ['netdump-server', '--dir', dir, '--hook', plain]);
  assert.equal(noexec.code, 2);
  assert.match(noexec.stderr, new RegExp(`^rawpoll: bad --hook '${plain}': not executable`));

  const s = startRawpoll(h.lab, h.b, ['netdump-server', '--dir', dir, '--hook', prog, '--hook-timeout', '3', '--timeout', '1', '--json'], /^/);
  assert.ok(await s.up, s.err());
  await new Promise((r) => setTimeout(r, 500)); // --json says nothing at start: give the herald socket its moment
  const hooksDone = (n: number) => waitFor(() => s.events().filter((e) => e.event === 'hook').length >= n, 15000);

  // 1. A complete dump: success, the client, its hostname (our file names use the address), the info and vmcore.
  const f1 = dumpFile('core1', 200_000);
  const r1 = await rawpollAsync(h.a, ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', f1]);
  assert.equal(r1.code, 0, r1.stderr);
  assert.ok(await hooksDone(1), JSON.stringify(s.events()));
  const [c1] = calls(hk);
  assert.deepEqual(c1, ['success', h.ipA, h.ipA, join(dir, `info.${h.ipA}.0`), join(dir, `vmcore.${h.ipA}.0`), 'complete']);
  assert.match(readFileSync(c1[3], 'utf8'), /Dump complete\n$/);
  assert.deepEqual(readFileSync(c1[4]), readFileSync(f1));
  const e1 = s.events().find((e) => e.event === 'hook')!;
  assert.equal(e1.result, 'ok');
  assert.equal(e1.code, 0);
  assert.deepEqual(e1.args, c1.slice(0, 5));

  // 2. The client killed mid-dump: after --timeout the dump ends as a timeout, and the hook still runs, with it.
  const f2 = dumpFile('core2', 64_000_000);
  const client = h.lab.spawn(h.a, [process.execPath, RAWPOLL, 'netdump', '-i', h.ifA, '--server', h.ipB, '--file', f2]);
  const partial = join(dir, `vmcore.${h.ipA}.1.incomplete`);
  assert.ok(await waitFor(() => existsSync(partial) && statSync(partial).size > 0, 10000, 5), 'the dump never started');
  client.kill('SIGKILL');
  assert.ok(await hooksDone(2), JSON.stringify(s.events()));
  const c2 = calls(hk)[1];
  assert.deepEqual(c2, ['timeout', h.ipA, h.ipA, join(dir, `info.${h.ipA}.1`), partial, 'timeout']);
  assert.ok(statSync(partial).size > 0 && statSync(partial).size < 64_000_000, 'the vmcore is the partial one');
  assert.match(readFileSync(c2[3], 'utf8'), /Dump incomplete: client timed out\n$/);

  // 3. A hook that sleeps past --hook-timeout 3: the next dump is received meanwhile; the slow hook is killed and said.
  writeFileSync(join(hk, 'slow'), '');
  const f3 = dumpFile('core3', 100_000);
  const t0 = Date.now();
  assert.equal((await rawpollAsync(h.a, ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', f3])).code, 0);
  assert.ok(await waitFor(() => calls(hk).length === 3, 5000), 'the third hook did not start');
  assert.equal(existsSync(join(hk, 'slow')), false, 'the third hook took the slow turn');
  const f4 = dumpFile('core4', 100_000);
  const r4 = await rawpollAsync(h.a, ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', f4]);
  assert.equal(r4.code, 0, r4.stderr);
  assert.ok(await hooksDone(4), JSON.stringify(s.events()));
  const ev = s.events();
  const dump4 = ev.findIndex((e) => e.event === 'dump' && e.index === 3);
  const slow = ev.findIndex((e) => e.event === 'hook' && (e.args as string[])[4] === join(dir, `vmcore.${h.ipA}.2`));
  assert.ok(dump4 >= 0 && slow >= 0, JSON.stringify(ev));
  assert.ok(dump4 < slow, 'the fourth dump completed while the third one\'s hook was still running');
  assert.equal(ev[slow].result, 'timeout');
  assert.ok((ev[slow].ms as number) >= 3000 && Date.now() - t0 < 12000, `killed after ${ev[slow].ms} ms`);
  assert.equal(ev.filter((e) => e.event === 'dump' && e.status === 'complete').length, 3);
  assert.deepEqual(calls(hk)[3].slice(0, 1), ['success']);
  const left = nsRun(h.b, ['pgrep', '-f', `sleep ${SLEEP}`]);
  assert.equal(left.code, 1, `the slow hook's sleep was not killed with it: pids ${left.stdout}`); // pgrep: 1 = none

  assert.equal(await s.stop(), 0, s.err());
});

test('collect --hook: after a complete oops report, the report and its sidecar', async () => {
  const h = hosts();
  const dir = join(tmp, 'collect');
  const hk = join(tmp, 'collect-hook');
  const prog = hookScript(hk);
  const c = startRawpoll(h.lab, h.b, ['collect', '--dir', dir, '--oops', '2004', '--hook', prog, '--json'], /"event":"listening"/);
  assert.ok(await c.up, c.err());
  const logFile = join(tmp, 'oops-in.log');
  writeFileSync(logFile, Array.from({ length: 200 }, (_, i) => `oops line ${i}\n`).join(''));
  const r = await rawpollAsync(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', logFile, '--dump-id', '9']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(await waitFor(() => c.events().some((e) => e.event === 'hook'), 15000), JSON.stringify(c.events()));
  const done = c.events().find((e) => e.event === 'dump-complete')!;
  const [call] = calls(hk);
  // Two arguments (then the empty RAWPOLL_DUMP_STATUS line: netdump-server's alone).
  assert.deepEqual(call, [done.file, done.sidecar, '']);
  assert.deepEqual(readFileSync(call[0]), readFileSync(logFile));
  assert.equal(JSON.parse(readFileSync(call[1], 'utf8')).log_file, basename(call[0]));
  const hook = c.events().find((e) => e.event === 'hook')!;
  assert.equal(hook.result, 'ok');
  assert.deepEqual(hook.args, [done.file, done.sidecar]);
  assert.equal(await c.stop(), 0, c.err());
  const summary = c.events().find((e) => e.event === 'summary')!;
  assert.deepEqual(summary.hooks, { ok: 1 });
});
