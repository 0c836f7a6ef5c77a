/**
 * Every command's `--json` output, run for real in a two-namespace veth lab (created here, always removed), checked
 * against its JSON Schema in schemas/ with ajv (draft 2020-12, strict mode, allErrors): the contract scripts rely on.
 * A failure prints ajv's errors and the offending document. Nothing goes anywhere but the lab's veth pair.
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { exitOf, flap, labsForThisFile, must, nsRun, rawpoll, rawpollAsync, RAWPOLL, ROOT, sh, udpReceiver, waitFor, type TwoHostLab } from '../helpers/lab.js';
import { startSink } from '../helpers/sink.js';
import { oopsDatagrams } from '../helpers/netoops.js';
// valid('<name>', line): one line of --json output against schemas/<name>.schema.json (test/unit/json-schemas.test.ts
// checks that every schema has such a call here).
import { validLine as valid } from '../helpers/schemas.js';

/** stdout of a --json run: exactly one non-empty line. */
function oneLine(stdout: string, what: string): string {
  const lines = stdout.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `${what}: expected one JSON line, got ${lines.length}: ${stdout.slice(0, 500)}`);
  return lines[0];
}

const { tmp, hosts } = labsForThisFile('rawpoll-json-schemas-');
let h: TwoHostLab;

before(() => {
  h = hosts();
});

describe('--json outputs validate against schemas/ (namespaces)', { timeout: 60000 }, () => {
  test('sink --json and blast --json (1000 frames)', async () => {
    const sink = await startSink(h.lab, h.b, ['--json', '--idle', '1', '--port', '9']);
    const bl = rawpoll(h.a, ['blast', '-i', h.ifA, '--to', `${h.ipB}:9`, '--count', '1000', '--json']);
    assert.equal(bl.code, 0, bl.stderr);
    const b = valid<{ sent: number; lastSeq: number[] }>('blast', oneLine(bl.stdout, 'blast'));
    const s = valid<{ totals: { received: number }; flows: { lastSeq: number }[] }>('sink', oneLine(await sink.output(), 'sink'));
    assert.equal(b.sent, 1000);
    assert.equal(s.totals.received, 1000);
    assert.equal(s.flows[0].lastSeq, b.lastSeq[0], "blast's lastSeq is the sink's");
  });

  test('sink --json --interval: the report carries the interval rows, which add up to its totals', async () => {
    const sink = await startSink(h.lab, h.b, ['--json', '--interval', '0.2', '--idle', '1', '--port', '9']);
    const bl = rawpoll(h.a, ['blast', '-i', h.ifA, '--to', `${h.ipB}:9`, '--count', '1000', '--rate', '4000pps', '--json']);
    assert.equal(bl.code, 0, bl.stderr);
    const s = valid<{ totals: { received: number }; intervals: { received: number }[] }>('sink', oneLine(await sink.output(), 'sink --interval'));
    assert.ok(s.intervals.length >= 2, JSON.stringify(s.intervals));
    assert.equal(s.intervals.reduce((a, r) => a + r.received, 0), s.totals.received);
    assert.equal(s.totals.received, 1000);
  });

  test('sink --json-stream: start, intervals, end', async () => {
    const sink = await startSink(h.lab, h.b, ['--json-stream', '--interval', '0.2', '--idle', '1', '--port', '9']);
    const bl = rawpoll(h.a, ['blast', '-i', h.ifA, '--to', `${h.ipB}:9`, '--count', '1000', '--rate', '4000pps', '--json']);
    assert.equal(bl.code, 0, bl.stderr);
    valid('blast', oneLine(bl.stdout, 'blast --rate'));
    const events = (await sink.output()).split('\n').filter(Boolean).map((l) => valid<{ event: string }>('sink-stream', l).event);
    assert.equal(events[0], 'start');
    assert.equal(events.at(-1), 'end');
    assert.ok(events.slice(1, -1).length >= 2 && events.slice(1, -1).every((e) => e === 'interval'), events.join(','));
  });

  test('send --json on the NIC (into a UDP receiver) and send/blast -w FILE --json offline', async () => {
    const rx = await udpReceiver(h.lab, h.b, 7001, 3);
    const r = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:7001`, '--count', '3', '--data', 'hello', '--json']);
    assert.equal(r.code, 0, r.stderr);
    valid('send', oneLine(r.stdout, 'send'));
    assert.equal((await rx.done()).length, 3);
    const macs = ['--src-mac', '02:00:00:00:00:01', '--dst-mac', '02:00:00:00:00:02', '--from', '192.0.2.1', '--to', '192.0.2.2:9'];
    const sw = rawpoll(h.a, ['send', ...macs, '-w', join(tmp, 'send.pcap'), '--count', '2', '--json']);
    assert.equal(sw.code, 0, sw.stderr);
    valid('send', oneLine(sw.stdout, 'send -w'));
    const bw = rawpoll(h.a, ['blast', ...macs, '-w', join(tmp, 'blast.pcap'), '--count', '10', '--flows', '2', '--sport', '1000-1001', '--json']);
    assert.equal(bw.code, 0, bw.stderr);
    valid('blast', oneLine(bw.stdout, 'blast -w'));
  });

  test('arp --json', () => {
    const r = rawpoll(h.a, ['arp', '-i', h.ifA, h.ipB, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const a = valid<{ mac: string }>('arp', oneLine(r.stdout, 'arp'));
    assert.equal(a.mac, h.macB);
  });

  test('rfc2544 --json: throughput, frame-loss, latency, back-to-back', async () => {
    const control = `${h.ipB}:7100`;
    const serve = h.lab.spawn(h.b, [process.execPath, RAWPOLL, 'sink', '--serve', control, '--token', 'schemas']);
    let err = '';
    serve.stderr!.on('data', (d) => (err += d));
    assert.ok(await waitFor(() => /serving trials/.test(err), 10000), `sink --serve did not start: ${err}`);
    const base = ['-i', h.ifA, '--to', `${h.ipB}:9`, '--control', control, '--token', 'schemas', '--sizes', '64,128', '--trial', '0.3', '--settle', '0.1', '--json'];
    const runs: [string, string[]][] = [
      ['throughput', ['--max-rate', '2000', '--resolution', '10']],
      ['frame-loss', ['--max-rate', '2000']],
      ['latency', ['--rate', '1000']],
      ['back-to-back', ['--repeat', '2', '--max-burst', '500', '--throughput', '8Mbps']],
    ];
    for (const [t, more] of runs) {
      const r = await rawpollAsync(h.a, ['rfc2544', t, ...base, ...more]);
      assert.equal(r.code, 0, `rfc2544 ${t}: ${r.stderr}`);
      const doc = valid<{ test: string }>('rfc2544', oneLine(r.stdout, `rfc2544 ${t}`));
      assert.equal(doc.test, t);
    }
    serve.kill('SIGTERM');
  });

  test('netconsole --json (from standard input) and oops --json, into UDP receivers', async () => {
    const nrx = await udpReceiver(h.lab, h.b, 6666, 2);
    const nc = rawpoll(h.a, ['netconsole', '-i', h.ifA, '--to', `${h.ipB}:6666`, '--json'], 'line one\nline two\n');
    assert.equal(nc.code, 0, nc.stderr);
    const events = nc.stdout.split('\n').filter(Boolean).map((l) => valid<{ event: string }>('netconsole', l).event);
    assert.deepEqual(events, ['ready', 'summary']);
    assert.equal((await nrx.done()).length, 2);
    const log = join(tmp, 'oops.log');
    writeFileSync(log, '<4>[    1.000000] BUG: unable to handle page fault\n<4>[    1.000100] Call Trace:\n');
    const orx = await udpReceiver(h.lab, h.b, 2004, 3);
    const oo = rawpoll(h.a, ['oops', '-i', h.ifA, '--to', h.ipB, '--log', log, '--type', 'oops', '--json']);
    assert.equal(oo.code, 0, oo.stderr);
    const o = valid<{ datagrams: number }>('oops', oneLine(oo.stdout, 'oops'));
    assert.equal((await orx.done()).length, o.datagrams);
  });

  test('netdump --json into netdump-server --json --hook, with link-down/link-up events before it', async () => {
    const dir = join(tmp, 'dumps');
    mkdirSync(dir);
    const srv = h.lab.spawn(h.b, [process.execPath, RAWPOLL, 'netdump-server', '--dir', dir, '--bind', h.ipB, '-i', h.ifB, '--hook', '/bin/true', '--json']);
    let out = '';
    let err = '';
    srv.stdout!.on('data', (d) => (out += d));
    srv.stderr!.on('data', (d) => (err += d));
    // The server prints nothing until an event: wait for its herald socket, then bounce its link.
    assert.ok(await waitFor(() => /:20023\b/.test(nsRun(h.b, ['ss', '-lun']).stdout), 10000), `netdump-server did not bind: ${err}`);
    await flap(h.b, h.ifB, 300);
    assert.ok(await waitFor(() => /"link-up"/.test(out), 5000), `no link-up event: ${out} ${err}`);
    const core = join(tmp, 'core.bin');
    writeFileSync(core, Buffer.alloc(20000, 0x5a));
    const nd = await rawpollAsync(h.a, ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', core, '--hostname', 'schemas', '--json']);
    assert.equal(nd.code, 0, nd.stderr);
    const sum = valid<{ bytes: number; serverPort: number }>('netdump', oneLine(nd.stdout, 'netdump'));
    assert.equal(sum.bytes, 20000);
    assert.ok(await waitFor(() => /"event":"hook"/.test(out), 5000), `no dump and hook events: ${out}`);
    srv.kill('SIGTERM');
    assert.equal((await exitOf(srv)).code, 0, err);
    const lines = out.split('\n').filter(Boolean);
    const kinds = lines.map((l) => (JSON.parse(l) as { event: string }).event);
    assert.deepEqual(kinds.filter((k) => k !== 'drops'), ['link-down', 'link-up', 'dump', 'hook', 'stop'], out);
    for (const l of lines) {
      const e = valid<{ event: string }>('netdump-server', l);
      if (e.event.startsWith('link-')) valid('link-event', l);
    }
    const dump = JSON.parse(lines[kinds.indexOf('dump')]) as { status: string; bytes: number; kdh: { hostname: string; parityOk: boolean } };
    assert.deepEqual([dump.status, dump.bytes, dump.kdh.hostname, dump.kdh.parityOk], ['complete', 20000, 'schemas', true]);
  });

  test('--version --json', () => {
    const r = rawpoll(h.a, ['--version', '--json']);
    assert.equal(r.code, 0, r.stderr);
    valid('version', oneLine(r.stdout, '--version --json'));
  });

  test('ndp --json (a lab of its own with IPv6 on, so the shared one stays quiet) and ndp --answer --json', () => {
    const v6 = hosts();
    v6.lab.addr6(v6.a, v6.ifA, 'fd00:5c::1/64');
    v6.lab.addr6(v6.b, v6.ifB, 'fd00:5c::2/64');
    const r = rawpoll(v6.a, ['ndp', '-i', v6.ifA, 'fd00:5c::2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(valid<{ mac: string }>('ndp', oneLine(r.stdout, 'ndp')).mac, v6.macB);
    const a = rawpoll(v6.a, ['ndp', '-i', v6.ifA, '--answer', 'fd00:5c::99', '--duration', '0.3', '--json']);
    assert.equal(a.code, 0, a.stderr);
    valid('ndp', oneLine(a.stdout, 'ndp --answer'));
  });
});

/** A receiver's stdout, kept as text: each line is validated as it was printed, not as a helper parsed it. */
function stdoutOf(p: ChildProcess): { text: () => string; lines: () => string[]; err: () => string } {
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  return { text: () => out, lines: () => out.split('\n').filter(Boolean), err: () => err };
}

/**
 * UDP datagrams from chosen source ports of one local address, IPv4 or IPv6 (python3, in a namespace): JSON on stdin,
 * a list of [dstIp, dstPort, srcPort, hexPayload], sent in order 10 ms apart.
 */
const UDP_SENDER = String.raw`
import socket, sys, json, time
src = sys.argv[1]
socks = {}
for dst, port, sport, hexp in json.loads(sys.stdin.read()):
    s = socks.get(sport)
    if s is None:
        s = socks[sport] = socket.socket(socket.AF_INET6 if ':' in src else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, sport))
    s.sendto(bytes.fromhex(hexp), (dst, port))
    time.sleep(0.01)
`;

/** A syslog daemon stand-in on a unix datagram socket (as test/integration/collect-syslog.test.ts): prints 'ready', then one line per message. */
const SYSLOG_STANDIN = String.raw`
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('ready', flush=True)
while True:
    s.recv(1 << 17)
    print('msg', flush=True)
`;

const hasPython = spawnSync('python3', ['-c', '1']).status === 0;

function udpSend(ns: string, from: string, datagrams: [string, number, number, Buffer][]): void {
  const r = nsRun(ns, ['python3', '-c', UDP_SENDER, from], JSON.stringify(datagrams.map(([d, p, s, b]) => [d, p, s, b.toString('hex')])));
  assert.equal(r.code, 0, `UDP sender: ${r.stderr}`);
}

describe('--json outputs validate against schemas/: collect and sink --serve (namespaces)', { timeout: 60000 }, () => {
  test('collect --json: every line of a run with netconsole, netoops, garbage, a hook, --syslog, SIGHUP, a link flap and SIGTERM', { skip: !hasPython && 'needs python3' }, async () => {
    const c = hosts();
    const ip3 = c.ipA.replace(/\.1$/, '.3');   // a second sender address in A: a host first seen by netconsole
    c.lab.addr(c.a, c.ifA, `${ip3}/24`);
    c.lab.addr6(c.a, c.ifA, 'fd00:5c0::1/64');   // and an IPv6 one (collect's sockets are dual-stack)
    c.lab.addr6(c.b, c.ifB, 'fd00:5c0::2/64');
    const dir = join(tmp, 'collect');
    mkdirSync(dir);
    writeFileSync(join(dir, '.oops-x.log.tmp-99999999'), 'left by a killed collector');   // no such pid: stale
    const sock = join(tmp, 'collect-syslog.sock');
    const syslog = c.lab.spawn(c.b, ['python3', '-c', SYSLOG_STANDIN, sock]);
    let syslogOut = '';
    syslog.stdout!.on('data', (d) => (syslogOut += d));
    assert.ok(await waitFor(() => syslogOut.startsWith('ready'), 10000), 'syslog stand-in did not start');
    const proc = c.lab.spawn(c.b, [process.execPath, RAWPOLL, 'collect', '--dir', dir, '--netconsole', '6666', '--oops', '2004', '--idle', '1',
      '--hook', '/bin/true', '--syslog', sock, '-i', c.ifB, '--json']);
    const o = stdoutOf(proc);
    const seen = (re: RegExp, ms = 10000) => waitFor(() => re.test(o.text()), ms);
    assert.ok(await seen(/"event":"listening"/), `collect did not start: ${o.err()}`);

    // A complete oops report (rawpoll oops, from A's first address: new-host with proto netoops), and its hook.
    const log = join(tmp, 'collect-oops.log');
    writeFileSync(log, '<4>[    1.000000] BUG: unable to handle page fault\n<4>[    1.000100] Call Trace:\n');
    const oo = await rawpollAsync(c.a, ['oops', '-i', c.ifA, '--to', c.ipB, '--log', log, '--type', 'oops', '--json']);
    assert.equal(oo.code, 0, oo.stderr);
    valid('oops', oneLine(oo.stdout, 'oops'));
    assert.ok(await seen(/"event":"hook"/), `no dump-complete and hook: ${o.text()}`);

    // rawpoll netconsole, extended with the release prefix, a line long enough to go in ncfrag pieces.
    const nc = await rawpollAsync(c.a, ['netconsole', '-i', c.ifA, '--to', c.ipB, '--extended', '--release'], `short one\nlong ${'L'.repeat(3000)}\nlast\n`);
    assert.equal(nc.code, 0, nc.stderr);
    assert.ok(await seen(/"event":"reassembled"/), `no reassembled: ${o.text()}`);

    // From the second address, port 7000: extended records with the seq numbers chosen here (new-host with the
    // release, a gap, a late one, a restart), a basic line, an ncfrag piece twice (duplicate, then never finished:
    // dropped at shutdown), a piece past its total (dropped). Port 7001 to netoops: garbage, and two chunks of three.
    const rec = (head: string, text: string) => Buffer.from(`${head};${text}\n`, 'latin1');
    const piece = (head: string, body: string) => Buffer.from(`${head};${body}`, 'latin1');
    const chunks = oopsDatagrams(Buffer.from('<0>[    2.000000] Kernel panic - not syncing: schemas\n'.repeat(50)), 7, 0x5c4e3a01, 'schemas-kernel');
    assert.equal(chunks.length, 3);
    udpSend(c.a, ip3, [
      [c.ipB, 6666, 7000, rec('6.1.0-schemas,6,0,1000,-', 'first')],
      [c.ipB, 6666, 7000, rec('6,1,1001,-', 'second')],
      [c.ipB, 6666, 7000, rec('6,5,1005,-', 'after a gap of three')],
      [c.ipB, 6666, 7000, rec('6,3,1003,-', 'late')],
      [c.ipB, 6666, 7000, rec('6.1.0-schemas,6,0,2000,-', 'rebooted')],
      [c.ipB, 6666, 7000, Buffer.from('a basic line, no header\n')],
      [c.ipB, 6666, 7000, piece('6,10,2001,-,ncfrag=0/20', 'abcdefghij')],
      [c.ipB, 6666, 7000, piece('6,10,2001,-,ncfrag=0/20', 'abcdefghij')],
      [c.ipB, 6666, 7000, piece('6,11,2002,-,ncfrag=15/20', 'abcdefghij')],
      [c.ipB, 2004, 7001, Buffer.from('garbage')],
      [c.ipB, 2004, 7001, chunks[0]],
      [c.ipB, 2004, 7001, chunks[2]],
    ]);
    // From IPv6: a record, a gap, a piece never finished.
    udpSend(c.a, 'fd00:5c0::1', [
      ['fd00:5c0::2', 6666, 7002, rec('6,0,3000,-', 'over IPv6')],
      ['fd00:5c0::2', 6666, 7002, rec('6,2,3002,-', 'over IPv6, one lost')],
      ['fd00:5c0::2', 6666, 7002, piece('6,3,3003,-,ncfrag=0/20', 'abcdefghij')],
    ]);
    assert.ok(await seen(/"event":"dump-partial"/), `no dump-partial after --idle: ${o.text()}`);

    // Log rotation, then a link outage on the watched interface.
    proc.kill('SIGHUP');
    assert.ok(await seen(/"event":"logs-reopened"/), `no logs-reopened: ${o.text()} ${o.err()}`);
    await flap(c.b, c.ifB, 300);
    assert.ok(await seen(/"event":"link-up"/), `no link-up: ${o.text()}`);
    proc.kill('SIGTERM');
    assert.deepEqual(await exitOf(proc), { code: 0, signal: null }, o.err());

    const lines = o.lines();
    const kinds = lines.map((l) => valid<{ event: string }>('collect', l).event);   // every line, each against the schema
    assert.equal(kinds[0], 'stale-temp-removed', o.text());
    assert.equal(kinds[1], 'listening', o.text());
    assert.equal(kinds.at(-1), 'summary', o.text());
    for (const k of ['new-host', 'dump-complete', 'hook', 'reassembled', 'seq-gap', 'seq-late', 'seq-restart', 'duplicate-fragment',
      'dropped', 'fragment-rejected', 'dump-partial', 'logs-reopened', 'link-down', 'link-up', 'fragments-dropped']) {
      assert.ok(kinds.includes(k), `no ${k} line: ${o.text()}`);
    }
    const docs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const of = (event: string) => docs.filter((d) => d.event === event);
    // Both new-host shapes (each names its protocol), a piece rejected, the counter reports of both protocols.
    assert.deepEqual(of('new-host').map((d) => [d.host, d.proto ?? null, d.release ?? null]),
      [[c.ipA, 'netoops', null], [ip3, 'netconsole', '6.1.0-schemas'], ['fd00:5c0::1', 'netconsole', null]]);
    assert.ok(of('fragment-rejected').some((d) => d.code === 'bad_range' && d.host === ip3 && d.seq === 11), o.text());
    assert.ok(of('dropped').some((d) => d.proto === 'netoops' && d.truncated === 1), o.text());
    assert.ok(of('dropped').some((d) => d.proto === 'netconsole' && d.bad_range === 1 && d.shutdown === 2), o.text());
    assert.deepEqual(of('seq-gap').map((d) => [d.host, d.expected, d.got, d.missing]), [[ip3, 2, 5, 3], ['fd00:5c0::1', 1, 2, 1]]);
    assert.deepEqual(of('seq-late').map((d) => [d.expected, d.got]), [[6, 3]]);
    assert.deepEqual(of('seq-restart').map((d) => [d.got, d.release]), [[0, '6.1.0-schemas']]);
    assert.deepEqual(of('dump-partial').map((d) => [d.reason, d.missing]), [['idle', [1]]]);
    assert.deepEqual(of('fragments-dropped').map((d) => [d.host, d.port, d.seq, d.code, d.have, d.total]).sort(),
      [[ip3, 7000, 10, 'shutdown', 10, 20], ['fd00:5c0::1', 7002, 3, 'shutdown', 10, 20]]);
    assert.deepEqual(of('hook').map((d) => d.result), ['ok']);
    const summary = docs.at(-1)!;
    assert.equal(summary.interrupted, 'SIGTERM');
    assert.deepEqual(Object.keys(summary).filter((k) => !['time', 'event', 'host', 'interrupted'].includes(k)).sort(),
      ['dumps_complete', 'dumps_partial', 'hooks', 'netconsole', 'netconsole_drops', 'oops_datagrams', 'oops_drops', 'syslog']);
    assert.ok((summary.syslog as { sent: number }).sent >= 11, JSON.stringify(summary));
  });

  test('collect --json: a full disk (disk-full, write-resumed) and a watched interface deleted (link-gone, summary with stopped, exit 1)', { skip: !hasPython && 'needs python3' }, async () => {
    const c = hosts();
    const mnt = join(tmp, 'small-fs');
    mkdirSync(mnt);
    must('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0755', 'rawpoll-test', mnt]);
    try {
      const dir = join(mnt, 'c');
      const proc = c.lab.spawn(c.b, [process.execPath, RAWPOLL, 'collect', '--dir', dir, '--netconsole', '6666', '-i', c.ifB, '--json']);
      const o = stdoutOf(proc);
      const seen = (re: RegExp, ms = 10000) => waitFor(() => re.test(o.text()), ms);
      assert.ok(await seen(/"event":"listening"/), `collect did not start: ${o.err()}`);
      // Fill the filesystem, then a netconsole line: it cannot be written.
      const filler = join(mnt, 'filler');
      const fd = openSync(filler, 'w');
      try {
        for (;;) writeSync(fd, Buffer.alloc(64 * 1024, 0x55));
      } catch (e) {
        assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
      } finally {
        closeSync(fd);
      }
      udpSend(c.a, c.ipA, [[c.ipB, 6666, 6665, Buffer.from('lost to a full disk\n')]]);
      assert.ok(await seen(/"event":"disk-full"/), `no disk-full: ${o.text()} ${o.err()}`);
      // Room again: the next line is written and the episode ends.
      unlinkSync(filler);
      udpSend(c.a, c.ipA, [[c.ipB, 6666, 6665, Buffer.from('written again\n')]]);
      assert.ok(await seen(/"event":"write-resumed"/), `no write-resumed: ${o.text()}`);
      // The interface named with -i deleted (this lab's own veth pair): the run ends.
      must('ip', ['-n', c.b, 'link', 'del', c.ifB]);
      assert.deepEqual(await exitOf(proc), { code: 1, signal: null }, o.err());
      const lines = o.lines();
      const kinds = lines.map((l) => valid<{ event: string }>('collect', l).event);   // every line, each against the schema
      assert.deepEqual(kinds, ['listening', 'new-host', 'disk-full', 'write-resumed', 'link-gone', 'summary'], o.text());
      const docs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(!('oops' in docs[0]) && docs[0].netconsole === 6666, lines[0]);
      assert.match(String(docs[2].error), /ENOSPC/);
      assert.deepEqual([docs[3].lost_records, docs[3].lost_bytes], [1, 'lost to a full disk\n'.length], lines[3]);
      const summary = docs[5];
      assert.deepEqual([summary.interrupted, summary.stopped], [null, `interface ${c.ifB} disappeared`]);
      assert.deepEqual(summary.write_failures, { episodes: 1, records: 1, bytes: 'lost to a full disk\n'.length, failing_now: false });
    } finally {
      c.lab.destroy();
      if (!(await waitFor(() => sh('umount', [mnt]).status === 0, 3000, 100))) sh('umount', ['-l', mnt]);
    }
  });

  test('sink --serve --json: every line of trials opened and closed by rawpoll rfc2544 and by a control client at SIGTERM', async () => {
    const control = `${h.ipB}:7101`;
    const serve = h.lab.spawn(h.b, [process.execPath, RAWPOLL, 'sink', '--serve', control, '--token', 'schemas', '--json']);
    const o = stdoutOf(serve);
    // Readiness on stdout: the serving line, for a script that reads only --json.
    assert.ok(await waitFor(() => /"event":"serving"/.test(o.text()), 10000), `sink --serve did not start: ${o.err()}`);
    const r = await rawpollAsync(h.a, ['rfc2544', 'frame-loss', '-i', h.ifA, '--to', `${h.ipB}:9`, '--control', control, '--token', 'schemas',
      '--sizes', '64', '--trial', '0.3', '--settle', '0.1', '--max-rate', '2000', '--json']);
    assert.equal(r.code, 0, `rfc2544 frame-loss: ${r.stderr}`);
    valid('rfc2544', oneLine(r.stdout, 'rfc2544 frame-loss'));
    // A client with a bad token (refused: stderr only), then one that opens a trial mid-stream and holds it.
    const client = h.lab.spawn(h.a, [process.execPath, '--input-type=module', '-e', `
      const { ControlClient } = await import(process.argv[1]);
      const [host, port] = [process.argv[2], Number(process.argv[3])];
      await ControlClient.connect(host, port, { token: 'wrong' }).then(() => console.log('accepted?'), (e) => console.log('refused'));
      const c = await ControlClient.connect(host, port, { token: 'schemas' });
      console.log('trial ' + await c.open({ port: 9200, midStream: true, timestamp: 'user' }));
      await new Promise(() => {});`,
    pathToFileURL(resolve(ROOT, 'dist', 'src', 'exp', 'control.js')).href, h.ipB, '7101']);
    const co = stdoutOf(client);
    assert.ok(await waitFor(() => /^refused\ntrial \d+\n/.test(co.text()), 10000), `control client: ${co.text()} ${co.err()}`);
    assert.ok(await waitFor(() => /"midStream":true/.test(o.text()), 5000), o.text());
    serve.kill('SIGTERM');
    assert.deepEqual(await exitOf(serve), { code: 0, signal: null }, o.err());
    assert.match(o.err(), /refused .*bad token/);
    const kinds = o.lines().map((l) => valid<{ event: string }>('sink-serve', l).event);   // every line, each against the schema
    const docs = o.lines().map((l) => JSON.parse(l) as { event: string; reason?: string; expect?: number | null; midStream?: boolean; timestamp?: string });
    const opened = docs.filter((d) => d.event === 'trial-opened');
    const closed = docs.filter((d) => d.event === 'trial-closed');
    assert.ok(opened.length >= 2 && closed.length === opened.length, kinds.join(','));
    assert.ok(opened.some((d) => typeof d.expect === 'number' && d.expect > 0 && !d.midStream), 'an rfc2544 trial, with expect');
    assert.ok(opened.some((d) => d.expect === null && d.midStream && d.timestamp === 'user'), "the client's trial");
    assert.ok(closed.some((d) => d.reason === 'closed'), 'closed by rfc2544');
    assert.equal(closed.at(-1)!.reason, 'server-stopped', o.text());
    assert.deepEqual([kinds[0], kinds.at(-1)], ['serving', 'stopped'], kinds.join(','));
    const served = JSON.parse(o.lines()[0]) as { control: string; token: boolean; mode: string };
    assert.deepEqual([served.control, served.token, served.mode], [control, true, 'socket']);
    const stop = JSON.parse(o.lines().at(-1)!) as { interrupted: string; trials: number };
    assert.deepEqual([stop.interrupted, stop.trials], ['SIGTERM', opened.length]);
    // The client is written as rawpoll writes endpoints (this listener is IPv4: a.b.c.d:port).
    assert.ok(opened.every((d) => new RegExp(`^${h.ipA.replace(/\./g, '\\.')}:\\d+$`).test((d as { client?: string }).client ?? '')), JSON.stringify(opened));
  });
});
