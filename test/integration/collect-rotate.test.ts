/**
 * Log rotation under a running `rawpoll collect`, as logrotate or newsyslog do it: rename the host's log, send the
 * daemon SIGHUP (the units' ExecReload), and the records after it go to a new file of the old name while nothing sent
 * before or after is lost or written twice. netdump-server takes the same reload without ending. Real netconsole traffic from rawpoll in one namespace, collect in the
 * other (both created here, always removed).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exitOf, nsRun, RAWPOLL, rawpoll, twoHosts, waitFor, type TwoHostLab } from '../helpers/lab.js';
import { startCollector } from '../helpers/collector.js';

const labs: TwoHostLab[] = [];
const dirs: string[] = [];
after(() => {
  for (const h of labs) h.lab.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** n netconsole lines `tag i`, sent as extended records from rawpoll in namespace a. */
function send(h: TwoHostLab, tag: string, n: number): void {
  const lines = Array.from({ length: n }, (_, i) => `${tag} ${i}`).join('\n') + '\n';
  const r = rawpoll(h.a, ['netconsole', '-i', h.ifA, '--to', `${h.ipB}:6666`, '--extended'], lines);
  assert.equal(r.code, 0, r.stderr);
}

function records(file: string, tag: string): string[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.includes(`${tag} `));
}

test('collect: SIGHUP reopens the host logs after a rename (logrotate), no record lost or doubled', async () => {
  const h = twoHosts();
  labs.push(h);
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-rotate-'));
  dirs.push(dir);
  const c = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666']);
  const log = join(dir, 'netconsole', `${h.ipA}.log`);
  send(h, 'before', 200);
  assert.ok(await waitFor(() => existsSync(log) && records(log, 'before').length === 200, 10000), `200 records before rotation: ${c.stderr()}`);

  renameSync(log, `${log}.1`);
  // Between the rename and the reload, records still go to the renamed file (the daemon holds it open).
  send(h, 'between', 50);
  assert.ok(await waitFor(() => records(`${log}.1`, 'between').length === 50, 10000), 'records between rename and SIGHUP');
  c.proc.kill('SIGHUP');
  assert.ok(await c.wait((e) => e.event === 'logs-reopened', 5000), `no logs-reopened event: ${JSON.stringify(c.events)} ${c.stderr()}`);
  send(h, 'after', 200);
  assert.ok(await waitFor(() => existsSync(log) && records(log, 'after').length === 200, 10000), `records after SIGHUP in a new ${log}`);

  assert.equal(c.proc.exitCode, null, 'SIGHUP must not end collect (Node\'s default would)');
  assert.equal(await c.stop(), 0, c.stderr());
  const old = readFileSync(`${log}.1`, 'utf8');
  const now = readFileSync(log, 'utf8');
  assert.equal(records(`${log}.1`, 'before').length, 200);
  assert.equal(records(`${log}.1`, 'after').length, 0, 'nothing after the reload in the rotated file');
  assert.equal(records(log, 'before').length + records(log, 'between').length, 0, 'nothing from before the reload in the new file');
  // Each record once, in order.
  for (const [text, tag, n] of [[old, 'before', 200], [old, 'between', 50], [now, 'after', 200]] as const) {
    const seen = text.split('\n').filter((l) => l.includes(`${tag} `)).map((l) => Number(/ (\d+)$/.exec(l)![1]));
    assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i), `${tag}: every record once, in order`);
  }
});

test('netdump-server: SIGHUP (a reload) does not end it; it says so once and still takes a dump', async () => {
  const h = twoHosts();
  labs.push(h);
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-hup-'));
  dirs.push(dir);
  const srv = h.lab.spawn(h.b, [process.execPath, RAWPOLL, 'netdump-server', '--dir', dir, '--bind', h.ipB, '--json']);
  let out = '';
  let err = '';
  srv.stdout!.on('data', (d) => (out += d));
  srv.stderr!.on('data', (d) => (err += d));
  assert.ok(await waitFor(() => /:20023\b/.test(nsRun(h.b, ['ss', '-lun']).stdout), 10000), `netdump-server did not bind: ${err}`);
  srv.kill('SIGHUP');
  assert.ok(await waitFor(() => /SIGHUP: nothing to reopen/.test(err), 5000), `no SIGHUP line: ${err}`);
  assert.equal(srv.exitCode, null, 'still running after SIGHUP');
  const core = join(dir, 'core.in');
  writeFileSync(core, Buffer.alloc(5000, 7));
  const nd = rawpoll(h.a, ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', core]);
  assert.equal(nd.code, 0, nd.stderr);
  assert.ok(await waitFor(() => /"status":"complete"/.test(out), 5000), out);
  srv.kill('SIGTERM');
  assert.equal((await exitOf(srv)).code, 0, err);
  assert.equal(err.match(/SIGHUP/g)?.length, 1, err);
});
