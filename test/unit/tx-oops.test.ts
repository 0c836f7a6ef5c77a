// tx/oops.ts without a NIC: the report's datagrams go to a recording Link (no root), and are read back with the
// netoops parser and the IPv4/UDP frame parser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostInfo } from '../../src/host/hostinfo.js';
import { NETOOPS_DATA_BYTES, parseNetoops, decodeUserBlob } from '../../src/proto/netoops.js';
import { buildOopsReport, sendOops, rearmOneShot, type OopsSendOptions } from '../../src/tx/oops.js';
import { UdpSender } from '../../src/tx/sender.js';
import { parseMac } from '../../src/wire/mac.js';
import { RecordingLink } from '../helpers/recordlink.js';

const HOST: HostInfo = {
  kernelRelease: '6.9.0-test', machine: 'x86_64', arch: 2,
  cpu: { vendorId: 'AuthenticAMD', family: 25, model: 33, stepping: 2, vendor: 2 },
  bootIdUuid: '6f1c1c2e-0000-4000-8000-000000000000', bootId: 0x6f1c1c2e, uptimeSec: 0x12345, board: 'B550', firmware: 'F12',
};
// 4.5 chunks: bytes i % 251 so every chunk's data differs.
const LOG = Buffer.from(Array.from({ length: 4 * NETOOPS_DATA_BYTES + 512 }, (_, i) => i % 251));
const SRC = 0x0a000007;
const DST = 0x0a000009;

function flow(link: RecordingLink): Omit<OopsSendOptions, 'report' | 'retransmit' | 'gapUs'> {
  return { link, dstMac: parseMac('02:00:00:00:00:09'), srcMac: parseMac('02:00:00:00:00:07'), from: { ip: SRC }, to: { ip: DST, port: 2004 } };
}

test('buildOopsReport: header fields from the host, overrides win, board/firmware in the v3 user blob', () => {
  const r = buildOopsReport(LOG, { soft: false }, HOST);
  assert.equal(r.type, 'oops');
  assert.equal(r.version, 3);
  assert.equal(r.dumpId, 0x2345); // seconds since boot & 0xffff, as the patch
  assert.equal(r.bootId, 0x6f1c1c2e);
  assert.equal(r.enc.packetCount, 5);
  const p = parseNetoops(r.enc.datagram(0));
  assert.ok(p.ok);
  assert.equal(p.repr.kernelVersion, '6.9.0-test');
  assert.deepEqual(p.repr.x86 && [p.repr.x86.vendor, p.repr.x86.family, p.repr.x86.model, p.repr.x86.stepping], [2, 25, 33, 2]);
  assert.deepEqual(decodeUserBlob(p.repr.userBlob!).fields, { board: 'B550', firmware: 'F12' });
  const o = buildOopsReport(LOG, { soft: true, version: 2, dumpId: 7, bootId: 9, kernelVersion: 'x', board: 'b', firmware: 'f' }, HOST);
  assert.deepEqual([o.type, o.version, o.dumpId, o.bootId, o.kernelVersion, o.board, o.firmware], ['soft', 2, 7, 9, 'x', 'b', 'f']);
});

test('sendOops: every chunk, newest first, in every round, from port 2004 to the collector; the link is closed', async () => {
  const link = new RecordingLink();
  const report = buildOopsReport(LOG, { soft: true }, HOST);
  const r = await sendOops({ ...flow(link), report, retransmit: 3, gapUs: 0 });
  assert.ok(!r.heldBack);
  assert.equal(r.sent, true);
  assert.equal(r.interrupted, null);
  assert.equal(r.datagrams, 15);
  assert.equal(r.total, 15);
  assert.equal(r.src, '10.0.0.7:2004');
  assert.equal(r.dst, '10.0.0.9:2004');
  assert.equal(r.disarmed, false);
  assert.ok(link.closed);
  const udp = link.udp();
  assert.equal(udp.length, 15);
  udp.forEach((u, i) => {
    assert.deepEqual([u.srcIp, u.dstIp, u.srcPort, u.dstPort], [SRC, DST, 2004, 2004]);
    const p = parseNetoops(u.payload);
    assert.ok(p.ok);
    const k = i % 5;
    assert.equal(p.repr.packetNo, k, 'packet_no 0 (the tail) first, each round');
    const start = (5 - 1 - k) * NETOOPS_DATA_BYTES;
    const chunk = LOG.subarray(start, start + NETOOPS_DATA_BYTES);
    assert.deepEqual(p.data.subarray(0, chunk.length), chunk);
    assert.ok(p.data.subarray(chunk.length).every((b) => b === 0), 'the short chunk is zero-padded');
  });
});

test('sendOops with --one-shot: the first oops goes out and disarms, the next is held back (interrupt never armed); soft still goes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-txoops-'));
  try {
    const file = join(dir, 'armed');
    const oops = buildOopsReport(LOG, { soft: false }, HOST);
    const state = { file, oneShot: true };
    const first = new RecordingLink();
    const a = await sendOops({ ...flow(first), report: oops, retransmit: 1, gapUs: 0, state });
    assert.ok(!a.heldBack && a.sent && a.disarmed);
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).armed, false);

    const second = new RecordingLink();
    let subscribed = false;
    const b = await sendOops({ ...flow(second), report: oops, retransmit: 1, gapUs: 0, state, interrupt: () => { subscribed = true; return () => {}; } });
    assert.ok(b.heldBack);
    assert.equal(b.reason, 'disarmed');
    assert.equal(second.frames.length, 0);
    assert.equal(subscribed, false, 'a held-back report never listens for interrupts');
    assert.ok(!existsSync(`${file}.lock`), 'the lock is released');

    const soft = await sendOops({ ...flow(new RecordingLink()), report: buildOopsReport(LOG, { soft: true }, HOST), retransmit: 1, gapUs: 0, state });
    assert.ok(!soft.heldBack && soft.sent && !soft.disarmed);

    await rearmOneShot(file);
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).armed, true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('sendOops interrupted: it stops at the next datagram, says how many went out, and leaves the state file as it was', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-txoops-'));
  try {
    const file = join(dir, 'armed');
    let stop: ((reason: string) => void) | null = null;
    let unsubscribed = false;
    const link = new RecordingLink((i) => {
      if (i === 5) stop!('SIGINT');
      return null;
    });
    const r = await sendOops({
      ...flow(link), report: buildOopsReport(LOG, { soft: false }, HOST), retransmit: 3, gapUs: 0, state: { file, oneShot: true },
      interrupt: (s) => { stop = s; return () => { unsubscribed = true; }; },
    });
    assert.ok(!r.heldBack);
    assert.equal(r.sent, false);
    assert.equal(r.interrupted, 'SIGINT');
    assert.equal(r.datagrams, 6);
    assert.equal(r.total, 15);
    assert.equal(r.disarmed, false);
    assert.equal(link.frames.length, 6);
    assert.ok(unsubscribed);
    assert.ok(!existsSync(file), 'the state file is left as it was (missing = armed)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('UdpSender.over: a flow with known addresses on any Link, no I/O of its own; a refused flow closes the link', () => {
  const link = new RecordingLink();
  const s = UdpSender.over(link, {
    srcMac: parseMac('02:00:00:00:00:07'), dstMac: parseMac('02:00:00:00:00:09'), srcIp: SRC, dstIp: DST, srcPort: 6665, dstPort: 6666,
  });
  s.send(Buffer.from('hello'));
  s.sendRepeated(Buffer.from('again'), 2);
  const udp = link.udp();
  assert.deepEqual(udp.map((u) => [u.ipId, u.srcPort, u.dstPort, u.payload.toString()]), [[1, 6665, 6666, 'hello'], [2, 6665, 6666, 'again'], [3, 6665, 6666, 'again']]);
  assert.throws(() => s.onUdp(() => {}), /receiving needs an interface/);
  s.abort();
  assert.ok(link.closed);
  const refused = new RecordingLink();
  assert.throws(() => UdpSender.over(refused, {
    srcMac: parseMac('02:00:00:00:00:07'), dstMac: parseMac('02:00:00:00:00:09'), srcIp: SRC, dstIp: DST, srcPort: 1, dstPort: 2, ttl: 256,
  }), /bad TTL '256'/);
  assert.ok(refused.closed);
});
