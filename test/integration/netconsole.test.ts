// `rawpoll netconsole` in two namespaces joined by a veth pair: what arrives at plain kernel UDP sockets
// (socat, a datagram-preserving receiver) and at `rawpoll collect`, compared byte for byte with datagrams the test
// builds itself from PROTOCOLS.md §2 (never by calling the code under test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, appendFileSync, renameSync, existsSync, openSync, readSync, closeSync, constants as C } from 'node:fs';
import { release as osRelease } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { labsForThisFile, type Lab, RAWPOLL, rawpoll, udpReceiver, waitFor, type TwoHostLab } from '../helpers/lab.js';

const { tmp, hosts } = labsForThisFile('rawpoll-nc-');

/** A background process whose stdout we keep; resolves when a line matching `ready` shows up. */
async function background(lab: Lab, ns: string, args: string[], ready: RegExp): Promise<{ p: ChildProcess; out: () => Buffer; err: () => string }> {
  const p = lab.spawn(ns, args);
  const chunks: Buffer[] = [];
  let err = '';
  p.stdout!.on('data', (d: Buffer) => chunks.push(d));
  p.stderr!.on('data', (d: Buffer) => (err += d));
  const out = () => Buffer.concat(chunks);
  const ok = await waitFor(() => ready.test(out().toString('latin1')) || p.exitCode !== null, 10000);
  if (!ok || p.exitCode !== null) throw new Error(`${args.join(' ')} did not get ready: ${out()} ${err}`);
  return { p, out, err: () => err };
}

/** `socat -u udp-recv:PORT -`: the plain receiver people use; resolves once its socket is bound. */
async function socat(h: TwoHostLab, port: number) {
  const s = h.lab.spawn(h.b, ['socat', '-u', `UDP-RECV:${port}`, '-']);
  const chunks: Buffer[] = [];
  s.stdout!.on('data', (d: Buffer) => chunks.push(d));
  const bound = await waitFor(() => rawSs(h.b).includes(`:${port} `), 5000);
  assert.ok(bound, `socat did not bind UDP ${port}`);
  return { out: () => Buffer.concat(chunks), proc: s };
}

/** Bound UDP sockets in a namespace (`ss -uln`). */
function rawSs(ns: string): string {
  return spawnSync('ip', ['netns', 'exec', ns, 'ss', '-uln']).stdout?.toString() ?? '';
}

async function collect(h: TwoHostLab, port: number, dir: string) {
  return background(h.lab, h.b, [process.execPath, RAWPOLL, 'collect', '--dir', dir, '--netconsole', String(port), '--json'], /"listening"/);
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  // Printable ASCII without '\\', so the extended format sends it unescaped.
  for (let i = 0; i < n; i++) b[i] = 0x21 + ((i * 7 + seed) % 90);
  for (let i = 0; i < n; i++) if (b[i] === 0x5c) b[i] = 0x2f;
  return b;
}

/** The kernel's fragmentation, written out from PROTOCOLS.md §2: `<header>,ncfrag=<off>/<total>;<data…>` <= 1000 bytes. */
function ncfrag(header: string, data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length;) {
    const h = Buffer.from(`${header},ncfrag=${off}/${data.length};`);
    const n = Math.min(1000 - h.length, data.length - off);
    out.push(Buffer.concat([h, data.subarray(off, off + n)]));
    off += n;
  }
  return out;
}

test('basic: stdin lines incl. a 5000-byte one arrive byte-exact at socat, rawpoll collect, in <= 1000-byte datagrams', async () => {
  const h = hosts();
  const dir = join(tmp, 'basic');
  const big = pattern(5000, 1);
  const input = Buffer.concat([Buffer.from('first line\n'), big, Buffer.from('\nlast\n')]);
  const s = await socat(h, 6666);
  const c = await collect(h, 6667, dir);
  const rx = await udpReceiver(h.lab, h.b, 6668, 8, 10000);
  // Three targets in the kernel's own syntax; no MAC given -> rawpoll ARPs for it.
  const t = (port: number) => `6665@${h.ipA}/${h.ifA},${port}@${h.ipB}/`;
  const r = rawpoll(h.a, ['netconsole', '--config', [t(6666), t(6667), t(6668)].join(';'), '--json'], input);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const summary = lines.find((l) => l.event === 'summary');
  assert.equal(summary.messages, 3);
  assert.equal(summary.datagrams, 3 * 8);
  assert.deepEqual(lines.find((l) => l.event === 'ready').targets.map((x: { dstMac: string }) => x.dstMac), [h.macB, h.macB, h.macB]);
  // Hand-built expectation: each line + '\n', cut at 1000 bytes.
  const bigLine = Buffer.concat([big, Buffer.from('\n')]);
  const expect = [Buffer.from('first line\n'), ...[0, 1000, 2000, 3000, 4000, 5000].map((o) => bigLine.subarray(o, o + 1000)), Buffer.from('last\n')];
  assert.deepEqual(expect.map((x) => x.length), [11, 1000, 1000, 1000, 1000, 1000, 1, 5]);
  const got = await rx.done();
  assert.deepEqual(got.map((d) => d.data), expect);
  assert.ok(got.every((d) => d.from === h.ipA && d.port === 6665));
  assert.ok(await waitFor(() => s.out().length >= input.length, 10000), 'socat got everything');
  assert.deepEqual(s.out(), input);
  const log = join(dir, 'netconsole', `${h.ipA}.log`);
  assert.ok(await waitFor(() => existsSync(log) && readFileSync(log).length >= input.length, 10000), 'collector wrote everything');
  assert.deepEqual(readFileSync(log), input);
  assert.match(c.out().toString(), new RegExp(`"event":"new-host","host":"${h.ipA.replace(/\./g, '\\.')}"`));
});

test('extended + release + userdata: a 5000-byte message is split with ncfrag exactly as the kernel does', async () => {
  const h = hosts();
  const dir = join(tmp, 'ext');
  const rel = osRelease();
  const big = pattern(5000, 3);
  const input = Buffer.concat([Buffer.from('short\tone\n'), big, Buffer.from('\n')]);
  const s = await socat(h, 6666);
  await collect(h, 6667, dir);
  const rx = await udpReceiver(h.lab, h.b, 6668, 7, 10000);
  const t = (port: number) => `+r@/${h.ifA},${port}@${h.ipB}/${h.macB}`;
  const r = rawpoll(h.a, ['netconsole', '--config', [t(6666), t(6667), t(6668)].join(';'), '--userdata', 'rack=b12', '--level', 'warning', '--json'], input);
  assert.equal(r.code, 0, r.stderr);
  const got = (await rx.done()).map((d) => d.data);
  // prio = facility 1 (user) << 3 | level 4 (warning) = 12; seq counts from 0; usec is the sender's clock: read it back.
  const u0 = /^[^,]+,12,0,(\d+),-;/.exec(got[0]?.toString('latin1') ?? '');
  assert.ok(u0, `first datagram: ${got[0]}`);
  const rec0 = Buffer.from(`${rel},12,0,${u0[1]},-;short\\x09one\n rack=b12\n`);
  const u1 = /^[^,]+,12,1,(\d+),-,ncfrag=0\/5011;/.exec(got[1]?.toString('latin1') ?? '');
  assert.ok(u1, `second datagram: ${got[1]?.subarray(0, 60)}`);
  assert.ok(Number(u1[1]) >= Number(u0[1]));
  const data1 = Buffer.concat([big, Buffer.from('\n rack=b12\n')]);   // body + "\n" + userdata
  const frags = ncfrag(`${rel},12,1,${u1[1]},-`, data1);
  assert.equal(frags.length, 6);
  assert.deepEqual(got, [rec0, ...frags]);
  assert.ok(got.every((d) => d.length <= 1000));
  const wire = Buffer.concat([rec0, ...frags]);
  assert.ok(await waitFor(() => s.out().length >= wire.length, 10000));
  assert.deepEqual(s.out(), wire);
  // The collector reassembles: the log holds each record as it would have been sent unfragmented.
  const log = join(dir, 'netconsole', `${h.ipA}.log`);
  const expectLog = Buffer.concat([rec0, Buffer.from(`${rel},12,1,${u1[1]},-;`), data1]);
  assert.ok(await waitFor(() => existsSync(log) && readFileSync(log).length >= expectLog.length, 10000));
  assert.deepEqual(readFileSync(log), expectLog);
});

/** Our own minimal /dev/kmsg reader: every record currently in the buffer. */
function readKmsg(): Buffer[] {
  const fd = openSync('/dev/kmsg', C.O_RDONLY | C.O_NONBLOCK);
  const out: Buffer[] = [];
  const buf = Buffer.alloc(16384);
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') continue;
        if (code === 'EAGAIN') break;
        throw e;
      }
      if (n <= 0) break;
      out.push(Buffer.from(buf.subarray(0, n)));
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

test('--kmsg: a marker written to /dev/kmsg arrives as the kernel record, with its level and seq; SIGTERM ends cleanly', async () => {
  const h = hosts();
  const s = await socat(h, 6669);
  const nc = await background(h.lab, h.a, [process.execPath, RAWPOLL, 'netconsole', '-i', h.ifA, '--to', `${h.ipB}:6669`, '--extended', '--kmsg', '--json'], /"event":"ready"/);
  const marker = `rawpoll-nc-marker-${process.pid}-${randomBytes(6).toString('hex')}`;
  writeFileSync('/dev/kmsg', `<3>${marker}\n`);
  const mine = readKmsg().find((r) => r.includes(marker));
  assert.ok(mine, 'the marker is in the kernel log');
  const m = /^(\d+),(\d+),(\d+),[-c][^;]*;/.exec(mine.toString('latin1'))!;
  assert.equal(Number(m[1]) & 7, 3, 'level 3 as written');
  assert.ok(await waitFor(() => s.out().includes(marker), 10000), 'the marker arrived');
  // Only our own record is asserted on (the kernel log is global): the same bytes, as netconsole would send them.
  const wire = s.out();
  const at = wire.indexOf(mine);
  assert.ok(at >= 0, `record ${mine} not found verbatim in ${wire.toString('latin1').slice(0, 500)}`);
  nc.p.kill('SIGTERM');
  assert.ok(await waitFor(() => nc.p.exitCode !== null, 10000), 'exits after SIGTERM');
  assert.equal(nc.p.exitCode, 0, nc.err());
  const summary = nc.out().toString().trim().split('\n').map((l) => JSON.parse(l)).find((j) => j.event === 'summary');
  assert.equal(summary.stopped, 'SIGTERM');
  assert.ok(summary.messages >= 1);
  const arrived = wire.subarray(at, at + mine.length).toString('latin1');
  assert.equal(arrived.split(';')[0].split(',')[1], m[2], 'seq carried through');
});

test('--follow: lines appended to a file arrive; rotation (rename + new file) and truncation are survived', async () => {
  const h = hosts();
  const s = await socat(h, 6670);
  const file = join(tmp, 'app.log');
  writeFileSync(file, 'old line, not sent\n');
  const nc = await background(h.lab, h.a, [process.execPath, RAWPOLL, 'netconsole', '-i', h.ifA, '--to', `${h.ipB}:6670`, '--follow', file, '--json'], /"event":"ready"/);
  appendFileSync(file, 'one\n');
  assert.ok(await waitFor(() => s.out().toString() === 'one\n', 10000), `got ${s.out()}`);
  appendFileSync(file, 'two\n');
  renameSync(file, file + '.1');
  appendFileSync(file + '.1', 'three (old file)\n');
  writeFileSync(file, 'four (new file)\n');
  assert.ok(await waitFor(() => s.out().toString().endsWith('four (new file)\n'), 10000), `got ${s.out()}`);
  writeFileSync(file, '');
  await waitFor(() => /follow-truncated/.test(nc.out().toString()), 3000);
  appendFileSync(file, 'five\n');
  assert.ok(await waitFor(() => s.out().toString().endsWith('five\n'), 10000), `got ${s.out()}`);
  assert.equal(s.out().toString(), 'one\ntwo\nthree (old file)\nfour (new file)\nfive\n');
  nc.p.kill('SIGINT');
  assert.ok(await waitFor(() => nc.p.exitCode !== null, 10000));
  assert.equal(nc.p.exitCode, 0, nc.err());
  const events = nc.out().toString().trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(events.some((e) => e.event === 'follow-rotated'));
  const summary = events.find((e) => e.event === 'summary');
  assert.equal(summary.stopped, 'SIGINT');
  assert.equal(summary.messages, 5);
});

/** Frames of a classic pcap file (24-byte global header, 16-byte record headers), parsed here by hand. */
function pcapFrames(file: string): Buffer[] {
  const b = readFileSync(file);
  const le = b.readUInt32LE(0) === 0xa1b2c3d4;
  const out: Buffer[] = [];
  for (let off = 24; off + 16 <= b.length;) {
    const incl = le ? b.readUInt32LE(off + 8) : b.readUInt32BE(off + 8);
    out.push(b.subarray(off + 16, off + 16 + incl));
    off += 16 + incl;
  }
  return out;
}

test('--broadcast: no ARP, frames to ff:ff:ff:ff:ff:ff in the netpoll profile (TTL 64, IP ID 1, 2, DF clear, 6665 ->)', async () => {
  const h = hosts();
  const s = await socat(h, 6671);
  const pcap = join(tmp, 'bcast.pcap');
  const dump = h.lab.spawn(h.b, ['tcpdump', '-i', h.ifB, '-U', '-n', '-c', '2', '-w', pcap, 'udp', 'port', '6671']);
  let dumpErr = '';
  dump.stderr!.on('data', (d) => (dumpErr += d));
  assert.ok(await waitFor(() => /listening on/.test(dumpErr), 10000), dumpErr);
  const r = rawpoll(h.a, ['netconsole', '-i', h.ifA, '--to', h.ipB + ':6671', '--broadcast', '--json'], 'bc one\nbc two\n');
  assert.equal(r.code, 0, r.stderr);
  const ready = JSON.parse(r.stdout.split('\n')[0]);
  assert.equal(ready.targets[0].dstMac, 'ff:ff:ff:ff:ff:ff');
  assert.equal(ready.targets[0].arpMs, null);
  assert.ok(await waitFor(() => s.out().toString() === 'bc one\nbc two\n', 10000), `got ${s.out()}`);
  assert.ok(await waitFor(() => dump.exitCode !== null, 10000), 'tcpdump saw both frames');
  const frames = pcapFrames(pcap);
  assert.equal(frames.length, 2);
  const macA = Buffer.from(h.macA.split(':').map((x) => parseInt(x, 16)));
  frames.forEach((f, i) => {
    const payload = Buffer.from(i === 0 ? 'bc one\n' : 'bc two\n');
    assert.deepEqual(f.subarray(0, 6), Buffer.alloc(6, 0xff));
    assert.deepEqual(f.subarray(6, 12), macA);
    assert.equal(f.readUInt16BE(12), 0x0800);
    assert.equal(f[14], 0x45);
    assert.equal(f.readUInt16BE(16), 20 + 8 + payload.length);
    assert.equal(f.readUInt16BE(18), i + 1, 'IP ID counts from 1');
    assert.equal(f.readUInt16BE(20), 0, 'DF clear, no fragment offset');
    assert.equal(f[22], 64);
    assert.equal(f[23], 17);
    assert.equal(f.readUInt16BE(34), 6665);
    assert.equal(f.readUInt16BE(36), 6671);
    assert.deepEqual(f.subarray(42, 42 + payload.length), payload);
  });
});

test('bad usage: exit 2 with a message naming the bad value, nothing sent', () => {
  const h = hosts();
  const cases: Array<[string[], RegExp]> = [
    [['--config', `r@/${h.ifA},@${h.ipB}/`], /'r'.*'\+r'/],
    [['--config', `@/${h.ifA},99999@${h.ipB}/`], /'99999'.*target port/],
    [['-i', h.ifA, '--to', h.ipB, '--release'], /need the extended format/],
    [['-i', h.ifA, '--to', h.ipB, '--extended', '--level', 'loud'], /bad --level 'loud'/],
    [['-i', h.ifA, '--to', h.ipB, '--extended', '--userdata', 'novalue'], /bad --userdata 'novalue'/],
    [['-i', h.ifA, '--to', h.ipB, '--extended', '--sysdata', 'cpu,disk'], /bad --sysdata field 'disk'/],
    [['-i', h.ifA], /no target/],
    [['--config', `@/${h.ifA},@${h.ipB}/;`], /empty target/],
    [['-i', h.ifA, '--to', h.ipB, '--from-start'], /--from-start is for --kmsg .* or --follow FILE/],
  ];
  for (const [args, re] of cases) {
    const r = rawpoll(h.a, ['netconsole', ...args], 'x\n');
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
});
