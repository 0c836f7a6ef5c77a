// collect --syslog's RFC 5424 messages: PRI, the SD element and its escaping, truncation, and the forwarder against
// real unix sockets (a datagram socket that is never read, a stream socket, none). Every message is parsed back with
// a strict regex written from RFC 5424 §6's ABNF, not with our formatter's knowledge.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  formatSyslog, syslogPri, escapeSdValue, sdName, netconsoleToSyslog, SyslogForwarder, SYSLOG_MAX_BYTES, type SyslogRecord,
} from '../../src/rx/syslog.js';
import { RuntimeError } from '../../src/errors.js';
import { parse5424 } from '../helpers/rfc5424.js';

const T = new Date('2026-11-22T13:04:05.678Z');

test('syslog: PRI = facility x 8 + severity; facilities out of range are user', () => {
  assert.equal(syslogPri(0, 4), 4);      // kern.warning
  assert.equal(syslogPri(0, 0), 0);      // kern.emerg: "<0>"
  assert.equal(syslogPri(1, 6), 14);     // user.info
  assert.equal(syslogPri(23, 7), 191);   // local7.debug, the largest PRI
  assert.equal(syslogPri(127, 3), 11);   // /dev/kmsg takes any facility; syslog has 24
});

test('syslog: SD-PARAM values escape ", \\ and ]; SD-NAMEs lose what they may not hold', () => {
  assert.equal(escapeSdValue('a"b\\c]d[e'), 'a\\"b\\\\c\\]d[e');
  assert.equal(sdName('ud.my key=x"]'), 'ud.my_key_x__');
  assert.equal(sdName('ud.' + 'k'.repeat(40)).length, 32);
});

test('syslog: one extended record, byte for byte', () => {
  const rec = Buffer.from('6.17.0,3,42,1234567,-,caller=T7;disk \\x5c"sda"] failed\\x0aagain\n dc=fra"1\n cpu=2\n msgid=5\n');
  const [r] = netconsoleToSyslog(rec, { host: '10.0.0.1', address: '10.0.0.1', port: 6665 }, T);
  const out = formatSyslog(r).toString('utf8');
  assert.equal(out, '<3>1 2026-11-22T13:04:05.678Z 10.0.0.1 kernel - netconsole [rawpoll@32473 seq="42" usec="1234567" ' +
    'src="10.0.0.1:6665" release="6.17.0" hdr.caller="T7" ud.dc="fra\\"1" sys.cpu="2" sys.msgid="5"] disk \\"sda"] failed\\x0aagain');
  const p = parse5424(Buffer.from(out));
  assert.deepEqual([p.pri, p.time, p.host, p.app, p.procid, p.msgid], [3, '2026-11-22T13:04:05.678Z', '10.0.0.1', 'kernel', '-', 'netconsole']);
  assert.deepEqual(p.sd['rawpoll@32473'], {
    seq: '42', usec: '1234567', src: '10.0.0.1:6665', release: '6.17.0', 'hdr.caller': 'T7', 'ud.dc': 'fra"1', 'sys.cpu': '2', 'sys.msgid': '5',
  });
  assert.equal(p.msg, 'disk \\"sda"] failed\\x0aagain');
});

test('syslog: facility from the record (user-space /dev/kmsg writes are user), basic text is kern.info, a message per line', () => {
  const [u] = netconsoleToSyslog(Buffer.from('14,0,5,-;hello\n'), { host: 'h', address: '10.0.0.2', port: 1 }, T);
  assert.equal(parse5424(formatSyslog(u)).pri, 14);
  const b = netconsoleToSyslog(Buffer.from('[  1.000000] one\n\n[  2.000000] two\x07\n'), { host: 'h', address: '10.0.0.2', port: 6665 }, T);
  assert.equal(b.length, 2);
  const p = b.map((r) => parse5424(formatSyslog(r)));
  assert.deepEqual(p.map((x) => [x.pri, x.msg, x.sd['rawpoll@32473']]), [
    [6, '[  1.000000] one', { src: '10.0.0.2:6665' }],
    [6, '[  2.000000] two\\x07', { src: '10.0.0.2:6665' }],
  ]);
});

test('syslog: truncated at 8 KiB, at a character boundary, saying so', () => {
  const euro = '\u20ac';   // 3 bytes in UTF-8: a cut must not split it
  const text = Buffer.from(euro.repeat(10000));
  const r: SyslogRecord = { time: T, host: '10.0.0.1', src: '10.0.0.1:6665', facility: 0, level: 2, text, seq: 1, usec: 2 };
  const out = formatSyslog(r);
  assert.ok(out.length <= SYSLOG_MAX_BYTES && out.length > SYSLOG_MAX_BYTES - 3, `length ${out.length}`);
  const p = parse5424(out);
  assert.equal(p.sd['rawpoll@32473'].trunc, '1');
  assert.ok(/^(\u20ac)+$/.test(p.msg), 'the text was cut inside a character');
  // A hostile record whose userdata alone is over the limit: the parameters that do not fit are left out.
  const big: SyslogRecord = { ...r, text: Buffer.from('x'), userdata: Array.from({ length: 100 }, (_, i) => [`k${i}`, 'v'.repeat(200)] as [string, string]) };
  const o2 = formatSyslog(big);
  assert.ok(o2.length <= SYSLOG_MAX_BYTES);
  const p2 = parse5424(o2);
  assert.equal(p2.sd['rawpoll@32473'].seq, '1');
  assert.equal(p2.sd['rawpoll@32473'].trunc, '1');
  assert.equal(p2.msg, 'x');
  // Just under the limit: whole.
  const fit = formatSyslog({ ...r, text: Buffer.from('a'.repeat(100)) });
  assert.equal(parse5424(fit).sd['rawpoll@32473'].trunc, undefined);
});

test('syslog forwarder: a missing socket and a stream socket are refused at start, naming the path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-syslog-'));
  try {
    const missing = join(dir, 'nothing');
    assert.throws(() => SyslogForwarder.open(missing), (e: Error) => e instanceof RuntimeError && e.message.includes(missing) && /ENOENT/.test(e.message));
    const stream = join(dir, 'stream');
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(stream, r));
    try {
      assert.throws(() => SyslogForwarder.open(stream), (e: Error) => e instanceof RuntimeError && e.message.includes(stream) && /SOCK_STREAM/.test(e.message));
    } finally {
      await new Promise((r) => srv.close(r));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('syslog forwarder: a daemon that never reads makes sends say busy at once, never block', { skip: spawnSync('python3', ['-c', '1']).status !== 0 && 'no python3' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-syslog-'));
  const path = join(dir, 'log');
  // A datagram socket bound and never read: its queue (net.unix.max_dgram_qlen, 512 by default) fills.
  const py = spawn('python3', ['-c', `import socket,sys,time\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint('ok',flush=True)\ntime.sleep(30)`, path]);
  try {
    await new Promise<void>((r) => py.stdout.once('data', () => r()));
    assert.ok(existsSync(path));
    const f = SyslogForwarder.open(path);
    const rec: SyslogRecord = { time: T, host: 'h', src: 'h:1', facility: 0, level: 6, text: Buffer.from('x'.repeat(200)) };
    const t0 = process.hrtime.bigint();
    const results = Array.from({ length: 3000 }, () => f.forward(rec));
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    f.close();
    assert.ok(f.stats.sent > 0, JSON.stringify(f.stats));
    assert.ok(f.stats.syslog_busy > 0, `no send was refused: ${JSON.stringify(f.stats)}`);
    assert.equal(f.stats.sent + f.stats.syslog_busy, 3000);
    assert.equal(results.filter((x) => x === 'syslog_busy').length, f.stats.syslog_busy);
    assert.ok(ms < 2000, `3000 sends took ${ms} ms`);
  } finally {
    py.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('syslog forwarder: a daemon that restarts — records are syslog_down while it is gone, then flow to the new socket', { skip: spawnSync('python3', ['-c', '1']).status !== 0 && 'no python3' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-syslog-'));
  const path = join(dir, 'log');
  // As rsyslog and journald do on start: unlink the old socket file, bind a new one; print each datagram.
  const daemon = () => {
    const p = spawn('python3', ['-c', `import socket,sys,os\ntry: os.unlink(sys.argv[1])\nexcept FileNotFoundError: pass\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint('ready',flush=True)\nwhile True: print(s.recv(65536).decode(),flush=True)`, path]);
    const got: string[] = [];
    let buf = '';
    p.stdout.on('data', (d) => { buf += d; const l = buf.split('\n'); buf = l.pop()!; got.push(...l); });
    return { p, got, ready: new Promise<void>((r) => { const t = setInterval(() => { if (got[0] === 'ready') { clearInterval(t); r(); } }, 10); }) };
  };
  const rec = (s: string): SyslogRecord => ({ time: T, host: 'h', src: 'h:1', facility: 0, level: 6, text: Buffer.from(s) });
  const a = daemon();
  let b: ReturnType<typeof daemon> | null = null;
  try {
    await a.ready;
    const f = SyslogForwarder.open(path);
    assert.equal(f.forward(rec('one')), null);
    await waitFor(() => a.got.length === 2);
    a.p.kill('SIGKILL');
    await new Promise((r) => a.p.once('close', r));
    // Gone: the send is refused and the reconnect finds nobody (the socket file is still there, unbound).
    assert.equal(f.forward(rec('lost')), 'syslog_down');
    b = daemon();
    await b.ready;
    // Reconnects are tried at most once a second.
    assert.equal(f.forward(rec('too soon')), 'syslog_down');
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(f.forward(rec('two')), null);
    await waitFor(() => b!.got.length === 2);
    assert.match(b.got[1], / two$/);
    assert.deepEqual({ sent: f.stats.sent, down: f.stats.syslog_down }, { sent: 2, down: 2 });
    f.close();
  } finally {
    a.p.kill();
    b?.p.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  return new Promise((res, rej) => {
    const t0 = Date.now();
    const t = setInterval(() => {
      if (pred()) { clearInterval(t); res(); } else if (Date.now() - t0 > ms) { clearInterval(t); rej(new Error('timed out')); }
    }, 10);
  });
}
