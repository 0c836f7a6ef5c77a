/**
 * `rawpoll collect --syslog PATH` for real: rawpoll netconsole (extended, with the release prefix, userdata and
 * sysdata) sends over a veth pair between two namespaces; collect forwards each record to a syslog stand-in bound to
 * a unix datagram socket. The stand-in is a few lines of Python because it must keep datagram boundaries (socat's
 * UNIX-RECV output runs the datagrams together, and a message's end is not marked in RFC 5424 over /dev/log); it
 * prints each datagram as one JSON string. Every message is parsed with the strict RFC 5424 regex of
 * test/helpers/rfc5424.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsForThisFile, nsRun, rawpollAsync, waitFor, RAWPOLL, must } from '../helpers/lab.js';
import { startCollector } from '../helpers/collector.js';
import { parse5424 } from '../helpers/rfc5424.js';

const { tmp, hosts } = labsForThisFile('rawpoll-csl-');
const noPython = spawnSync('python3', ['-c', '1']).status !== 0 && 'needs python3 for the syslog stand-in';

/** Binds PATH (SOCK_DGRAM) and prints each datagram as a JSON string; with `read` false it never reads (a stuck daemon). */
const STANDIN = String.raw`
import socket, sys, json, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps('ready'), flush=True)
if sys.argv[2] == 'read':
    while True:
        d = s.recv(1 << 17)
        print(json.dumps(d.decode('utf-8', 'surrogateescape')), flush=True)
else:
    time.sleep(60)
`;

function standin(lab: { spawn: (ns: string, args: string[]) => ChildProcess }, ns: string, path: string, read: boolean): { got: string[]; ready: Promise<boolean> } {
  const p = lab.spawn(ns, ['python3', '-c', STANDIN, path, read ? 'read' : 'stuck']);
  const got: string[] = [];
  let buf = '';
  let ok = false;
  p.stdout!.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const v = JSON.parse(buf.slice(0, i)) as string;
      buf = buf.slice(i + 1);
      if (!ok && v === 'ready') ok = true;
      else got.push(v);
    }
  });
  return { got, ready: waitFor(() => ok, 10000) };
}

test('collect --syslog: each extended record arrives once as RFC 5424 with host, PRI, seq, release, userdata, sysdata', { skip: noPython }, async () => {
  const h = hosts();
  // systemd's default (sysctl.d/50-default.conf); a new namespace starts at 10, which a burst of records outruns.
  must('ip', ['netns', 'exec', h.b, 'sysctl', '-qw', 'net.unix.max_dgram_qlen=512']);
  const sock = join(tmp, 'log1');
  const s = standin(h.lab, h.b, sock, true);
  assert.ok(await s.ready, 'syslog stand-in did not start');
  const dir = join(tmp, 'c1');
  const c = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666', '--syslog', sock]);
  const t0 = Date.now();
  const tag = `p${process.pid}`;
  const lines = [`${tag} first`, `${tag} quote " bracket ] backslash \\ end`, `${tag} long ${'L'.repeat(2500)}`, `${tag} last`];
  const r = await rawpollAsync(h.a, ['netconsole', '-i', h.ifA, '--to', h.ipB, '--extended', '--release', '--userdata', 'dc=lab"1',
    '--sysdata', '--level', 'warning'], lines.join('\n') + '\n');
  assert.equal(r.code, 0, r.stderr);
  assert.ok(await waitFor(() => s.got.length >= lines.length, 10000), `syslog got ${s.got.length} of ${lines.length}: ${c.stderr()}`);
  await new Promise((res) => setTimeout(res, 300));   // anything sent twice would be here by now
  assert.equal(await c.stop(), 0, c.stderr());
  const t1 = Date.now();

  assert.equal(s.got.length, lines.length, s.got.join('\n'));
  const msgs = s.got.map((m) => parse5424(m));
  const release = nsRun(h.a, ['uname', '-r']).stdout.trim();
  for (const [i, m] of msgs.entries()) {
    assert.equal(m.pri, 1 * 8 + 4, 'user.warning: rawpoll netconsole writes lines as /dev/kmsg would, facility user');
    assert.equal(m.host, h.ipA);
    assert.equal(m.app, 'kernel');
    assert.equal(m.procid, '-');
    assert.equal(m.msgid, 'netconsole');
    const when = Date.parse(m.time);
    assert.ok(when >= t0 - 1000 && when <= t1 + 1000, `TIMESTAMP ${m.time} is the receive time`);
    const sd = m.sd['rawpoll@32473'];
    assert.ok(sd, JSON.stringify(m.sd));
    assert.equal(sd.seq, String(i), 'in order, each seq once');
    assert.equal(sd.src, `${h.ipA}:6665`);
    assert.equal(sd.release, release);
    assert.equal(sd['ud.dc'], 'lab"1');
    assert.match(sd['sys.cpu'], /^\d+$/);
    assert.ok(sd['sys.taskname'].length > 0 && sd['sys.taskname'].length <= 15);
    assert.equal(sd['sys.release'], release);
    assert.equal(sd['sys.msgid'], String(i + 1));
    assert.match(sd.usec, /^\d+$/);
    assert.equal(m.msg, lines[i]);
  }
  // The long one came in ncfrag pieces, reassembled before forwarding.
  assert.ok(Number(msgs[2].sd['rawpoll@32473'].frags) >= 3, JSON.stringify(msgs[2].sd));
  const summary = c.events.find((e) => e.event === 'summary') as { syslog?: Record<string, unknown> };
  assert.deepEqual(summary.syslog, { path: sock, sent: lines.length });
  // And the log file holds them too, as before.
  const log = readFileSync(join(dir, 'netconsole', `${h.ipA}.log`), 'utf8');
  for (const l of lines) assert.ok(log.includes(l.replace(/\\/g, '\\x5c')), l.slice(0, 40));
});

test('collect --syslog: a daemon that does not read — records are counted as syslog_busy, still logged, reception goes on', { skip: noPython }, async () => {
  const h = hosts();
  const sock = join(tmp, 'log2');
  const s = standin(h.lab, h.b, sock, false);
  assert.ok(await s.ready, 'syslog stand-in did not start');
  const dir = join(tmp, 'c2');
  const c = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666', '--syslog', sock]);
  const N = 300;
  const r = await rawpollAsync(h.a, ['netconsole', '-i', h.ifA, '--to', h.ipB, '--extended'],
    Array.from({ length: N }, (_, i) => `busy ${i}`).join('\n') + '\n');
  assert.equal(r.code, 0, r.stderr);
  const logFile = join(dir, 'netconsole', `${h.ipA}.log`);
  assert.ok(await waitFor(() => { try { return readFileSync(logFile, 'utf8').includes(`busy ${N - 1}\n`); } catch { return false; } }, 10000));
  assert.equal(await c.stop(), 0, c.stderr());
  const summary = c.events.find((e) => e.event === 'summary') as { syslog: Record<string, number>; netconsole_drops: Record<string, number>; netconsole: Record<string, number> };
  assert.equal(summary.netconsole.records, N);
  assert.ok(summary.netconsole_drops.syslog_busy > 0, JSON.stringify(summary));
  assert.equal(summary.syslog.syslog_busy, summary.netconsole_drops.syslog_busy);
  assert.equal((summary.syslog.sent ?? 0) + summary.syslog.syslog_busy, N, JSON.stringify(summary.syslog));
  assert.ok(c.events.some((e) => e.event === 'dropped' && e.proto === 'netconsole' && Number(e.syslog_busy) > 0), 'no dropped line names syslog_busy');
});

test('collect --syslog: a socket that is not there — exit 1 naming it, nothing left behind', async () => {
  const h = hosts();
  const sock = join(tmp, 'no-such-log');
  const dir = join(tmp, 'never-made');
  const r = nsRun(h.b, [process.execPath, RAWPOLL, 'collect', '--dir', dir, '--netconsole', '6666', '--syslog', sock]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.ok(r.stderr.includes(sock) && /ENOENT/.test(r.stderr), r.stderr);
  assert.ok(!/\n\s+at /.test(r.stderr), `a stack trace: ${r.stderr}`);
  assert.equal(r.stdout, '', 'not listening');
  assert.ok(!existsSync(dir), '--dir was created');
  assert.ok(!existsSync(sock), 'a socket file was created');
});
