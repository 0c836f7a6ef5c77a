/**
 * rawpoll blast on a real veth pair, each engine: frames are captured (tcpdump) or counted (the receiver's kernel UDP
 * counters) on the peer namespace and checked byte for byte against PROTOCOLS.md §1 and §5, with checksums
 * recomputed here; and, frame for frame, against what src/tx/plan.ts makes of the same templates — so the C loop
 * (native/src/plan.h) and the TS plan walker are held to the same bytes, bad checksums included.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePcap } from '../../src/wire/pcapfile.js';
import { parseMac } from '../../src/wire/mac.js';
import { parseIpv4 } from '../../src/wire/addr.js';
import { nativeAvailable } from '../../src/link/native.js';
import { parseSizes } from '../../src/cli/blast-args.js';
import { planFor, PlanWriter } from '../../src/tx/plan.js';
import { buildTemplates, makeFlows, templateFrame, type TemplateOptions } from '../../src/tx/templates.js';
import { rawpoll, rawpollAsync, snmp, twoHosts, type TwoHostLab } from '../helpers/lab.js';
import { onesSum } from '../helpers/bytes.js';

const MAGIC = 0xbe9be955;

const csum = onesSum;

interface Frame { ipId: number; sport: number; dport: number; seq: number; tvSec: number; tvUsec: number; len: number; ts: number }

/** Checks one captured frame independently (Ethernet, IPv4 header checksum, UDP checksum with pseudo-header, magic). */
function check(d: Buffer, macA: string, macB: string, ipA: string, ipB: string): Frame {
  const mac = (s: string) => Buffer.from(s.split(':').map((x) => parseInt(x, 16)));
  assert.deepEqual(d.subarray(0, 6), mac(macB), 'dst MAC');
  assert.deepEqual(d.subarray(6, 12), mac(macA), 'src MAC');
  assert.equal(d.readUInt16BE(12), 0x0800);
  const ip = 14;
  assert.equal(d[ip], 0x45);
  assert.equal(d[ip + 8], 64, 'TTL 64 (netpoll)');
  assert.equal(d[ip + 9], 17);
  assert.equal(d.readUInt16BE(ip + 6), 0, 'DF clear, no fragment');
  assert.equal(d.subarray(ip + 12, ip + 16).join('.'), ipA);
  assert.equal(d.subarray(ip + 16, ip + 20).join('.'), ipB);
  assert.equal(csum(d, ip, ip + 20), 0xffff, 'IPv4 header checksum');
  const ipLen = d.readUInt16BE(ip + 2);
  assert.equal(ipLen, d.length - 14, 'datagram fills the frame');
  const udp = ip + 20;
  const udpLen = d.readUInt16BE(udp + 4);
  assert.equal(udpLen, ipLen - 20);
  const pseudo = csum(d, ip + 12, ip + 20, 17 + udpLen);
  assert.notEqual(d.readUInt16BE(udp + 6), 0, 'UDP checksum present');
  assert.equal(csum(d, udp, udp + udpLen, pseudo), 0xffff, 'UDP checksum');
  assert.equal(d.readUInt32BE(udp + 8), MAGIC, 'pktgen magic');
  return {
    ipId: d.readUInt16BE(ip + 4), sport: d.readUInt16BE(udp), dport: d.readUInt16BE(udp + 2), seq: d.readUInt32BE(udp + 12),
    tvSec: d.readUInt32BE(udp + 16), tvUsec: d.readUInt32BE(udp + 20), len: d.length, ts: 0,
  };
}

/** tcpdump on B until `n` UDP frames arrived; resolves with the parsed frames' records. */
async function capture(L: TwoHostLab, n: number, run: () => Promise<void>, filter = 'udp') {
  const file = join(tmpdir(), `rpblast-${process.pid}-${Math.random().toString(36).slice(2)}.pcap`);
  const p = L.lab.spawn(L.b, ['tcpdump', '-n', '-i', L.ifB, '-B', '65536', '-U', '-c', String(n), '-w', file, filter]);
  await new Promise<void>((res) => p.stderr!.on('data', (d: Buffer) => { if (/listening on/.test(d.toString())) res(); }));
  await run();
  const exited = await new Promise<boolean>((res) => {
    if (p.exitCode !== null) return res(true);
    const t = setTimeout(() => { p.kill('SIGINT'); res(false); }, 15000);
    p.on('exit', () => { clearTimeout(t); res(true); });
  });
  await new Promise((r) => setTimeout(r, 100));
  const recs = parsePcap(readFileSync(file)).records;
  rmSync(file, { force: true });
  assert.ok(exited, `tcpdump saw only ${recs.length} of ${n} frames`);
  return recs;
}

const engines = nativeAvailable() ? ['native', 'pcap'] : ['pcap'];

/**
 * Compares captured frames, in order, with the frames src/tx/plan.ts writes from the templates blast built for the
 * same flags: IP IDs from 1, seqs per flow from 1, and each frame's tv_sec/tv_usec as captured (the wall clock is
 * the one thing the test cannot know beforehand).
 */
function sameAsPlan(L: TwoHostLab, recs: { data: Buffer }[], o: Partial<TemplateOptions>): void {
  const t = buildTemplates({
    srcMac: parseMac(L.macA), dstMac: parseMac(L.macB), dstIp: parseIpv4(L.ipB, 'B'), mtu: 1500, seq: true, ipId: 'counter',
    flows: makeFlows({ srcIps: [parseIpv4(L.ipA, 'A')], srcPorts: [9, 9], dstPorts: [9, 9] }), sizes: parseSizes(undefined, undefined), ...o,
  });
  const w = new PlanWriter(t, planFor(t));
  const buf = Buffer.alloc(65536);
  const hdr = t.seqOff;
  recs.forEach((rec, i) => {
    const ti = t.order[i % t.order.length];
    w.setTime(rec.data.readUInt32BE(hdr + 8), rec.data.readUInt32BE(hdr + 12));
    w.write(buf, 0, ti, true);
    const want = buf.subarray(0, templateFrame(t, ti).length);
    if (!rec.data.equals(want)) assert.deepEqual(rec.data, want, `frame ${i}: not the plan's bytes`);
  });
}

describe('rawpoll blast', () => {
  let L: TwoHostLab;
  before(() => {
    L = twoHosts();
  });
  after(() => L?.lab.destroy());

  for (const engine of engines) {
    test(`${engine}: paced frames arrive byte-exact: IP ID and seq count from 1, checksums right, timestamps now`, async () => {
      const n = 3000;
      let out = '';
      const t0 = Date.now() / 1000;
      const recs = await capture(L, n, async () => {
        const r = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--count', String(n), '--rate', '20kpps', '--engine', engine, '--json']);
        assert.equal(r.code, 0, r.stderr);
        out = r.stdout;
      });
      const j = JSON.parse(out);
      assert.equal(j.sent, n);
      assert.equal(j.notSent, 0);
      assert.equal(j.engine, engine);
      assert.equal(recs.length, n);
      recs.forEach((rec, i) => {
        const f = check(rec.data, L.macA, L.macB, L.ipA, L.ipB);
        assert.equal(f.len, 60);
        assert.equal(f.ipId, (i + 1) & 0xffff, `IP ID of frame ${i}`);
        assert.equal(f.seq, i + 1, `seq of frame ${i}`);
        assert.equal(f.sport, 9);
        assert.equal(f.dport, 9);
        assert.ok(Math.abs(f.tvSec + f.tvUsec / 1e6 - t0) < 30, 'tv_sec is the wall clock');
        assert.ok(f.tvUsec < 1e6);
      });
      sameAsPlan(L, recs, {});
      // The sender's own count of the run agrees with the requested rate (the 1% target; wide margin here).
      assert.ok(Math.abs(j.rateError) < 0.05, `rate error ${j.rateError}`);
    });

    test(`${engine}: 100000 frames unpaced, every one delivered to the peer's UDP layer`, () => {
      const noPorts0 = snmp(L.b, 'Udp', 'NoPorts');
      const csumErr0 = snmp(L.b, 'Udp', 'InCsumErrors');
      const r = rawpoll(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--count', '100000', '--engine', engine, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.sent, 100000);
      assert.equal(j.notSent, 0);
      assert.equal(j.bytes, 6000000);
      // Nothing listens on port 9 in B: each datagram that reached UDP counts once in NoPorts.
      assert.equal(snmp(L.b, 'Udp', 'NoPorts') - noPorts0, 100000);
      assert.equal(snmp(L.b, 'Udp', 'InCsumErrors') - csumErr0, 0);
    });
  }

  for (const engine of engines) test(`${engine}: flows × IMIX sizes: ports and sizes cycle, seq counts per flow, every checksum right, the plan's bytes`, async () => {
    const n = 1200;
    const recs = await capture(L, n, async () => {
      const r = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', L.ipB, '--flows', '4', '--sport', '10000-10003', '--dport', '9',
        '--size', '64,576,1514', '--imix', '7,4,1', '--count', String(n), '--rate', '20kpps', '--engine', engine]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /1200 frames/);
    });
    const nextSeq = new Map<number, number>();
    const sizes = new Map<number, number>();
    recs.forEach((rec, i) => {
      const f = check(rec.data, L.macA, L.macB, L.ipA, L.ipB);
      assert.equal(f.sport, 10000 + (i % 4), `flow of frame ${i}`);
      const want = nextSeq.get(f.sport) ?? 1;
      assert.equal(f.seq, want, `seq of flow ${f.sport}`);
      nextSeq.set(f.sport, want + 1);
      sizes.set(f.len, (sizes.get(f.len) ?? 0) + 1);
      assert.equal(f.ipId, i + 1);
    });
    assert.deepEqual([...nextSeq.values()], [301, 301, 301, 301]);
    assert.deepEqual(Object.fromEntries(sizes), { 64: 700, 576: 400, 1514: 100 });
    sameAsPlan(L, recs, {
      flows: makeFlows({ srcIps: [parseIpv4(L.ipA, 'A')], srcPorts: [10000, 10003], dstPorts: [9, 9], flows: 4 }),
      sizes: parseSizes('64,576,1514', '7,4,1'),
    });
  });

  for (const engine of engines) test(`${engine}: --bad-ip-checksum --bad-udp-checksum, 70000 frames (every IP ID): each checksum the right one + 1, the plan's bytes; the peer drops them all`, async () => {
    const n = 70000;
    const hdrErrs0 = snmp(L.b, 'Ip', 'InHdrErrors');
    const recs = await capture(L, n, async () => {
      const r = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--count', String(n), '--rate', '300kpps',
        '--bad-ip-checksum', '--bad-udp-checksum', '--engine', engine, '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).sent, n);
    });
    assert.equal(recs.length, n);
    for (const [i, rec] of recs.entries()) {
      const d = rec.data;
      // Wrong by exactly one: the receiver's ones'-complement sum over the header (or datagram) comes to 0x0001.
      if (csum(d, 14, 34) !== 1) assert.fail(`frame ${i}: IPv4 header sums to ${csum(d, 14, 34)}, not 1`);
      const udpLen = d.readUInt16BE(38);
      const u = csum(d, 34, 34 + udpLen, csum(d, 26, 34, 17 + udpLen));
      if (u !== 1) assert.fail(`frame ${i}: UDP sums to ${u}, not 1`);
    }
    sameAsPlan(L, recs, { ipChecksum: 'bad', udpChecksum: 'bad' });
    // The peer's IP layer refuses every one of them (header checksum), before UDP sees any.
    assert.equal(snmp(L.b, 'Ip', 'InHdrErrors') - hdrErrs0, n);
  });

  if (engines.includes('native')) {
    test('native --threads 2: every IP ID and every per-flow seq goes out exactly once, checksums right', async () => {
      const n = 6000;
      const recs = await capture(L, n, async () => {
        const r = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', L.ipB, '--count', String(n), '--threads', '2', '--flows', '3',
          '--sport', '100-102', '--size', '60,100', '--json']);
        assert.equal(r.code, 0, r.stderr);
        const j = JSON.parse(r.stdout);
        assert.equal(j.sent, n);
        assert.deepEqual(j.lastSeq, [2000, 2000, 2000]);
      }, 'udp and src portrange 100-102');
      const ids = new Set<number>();
      const seqs = new Map<number, number[]>();
      for (const rec of recs) {
        const f = check(rec.data, L.macA, L.macB, L.ipA, L.ipB);
        ids.add(f.ipId);
        seqs.set(f.sport, [...(seqs.get(f.sport) ?? []), f.seq]);
      }
      assert.equal(ids.size, n);
      assert.ok([...ids].every((id) => id >= 1 && id <= n));
      for (const port of [100, 101, 102]) {
        const got = (seqs.get(port) ?? []).sort((a, b) => a - b);
        assert.deepEqual(got, Array.from({ length: 2000 }, (_, i) => i + 1), `flow ${port}`);
      }
    });
  }

  for (const engine of engines) test(`${engine}: --burst 16 --burst-gap 3ms: the receiver sees groups of 16 with the large gap between them`, async () => {
    const recs = await capture(L, 160, async () => {
      const r = await rawpollAsync(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--burst', '16', '--burst-gap', '3ms', '--count', '160', '--engine', engine]);
      assert.equal(r.code, 0, r.stderr);
    });
    const t = recs.map((r) => r.tsSec * 1e6 + r.tsUsec);
    const gaps = t.slice(1).map((x, i) => x - t[i]);
    // Split where the gap is at least 1 ms (a third of the burst gap): exactly the burst boundaries.
    const groups: number[] = [1];
    for (const g of gaps) {
      if (g >= 1000) groups.push(1);
      else groups[groups.length - 1]++;
    }
    assert.deepEqual(groups, new Array(10).fill(16), `gaps µs: ${gaps.join(',')}`);
  });

  for (const engine of engines) test(`${engine}: --start-at in the future starts within a few ms of it; in the past is a usage error`, async () => {
    const at = Date.now() / 1000 + 1.5;
    const atStr = at.toFixed(3);
    const r = rawpoll(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--count', '100', '--start-at', atStr, '--engine', engine, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    const first = Number(j.firstSendEpoch);
    assert.ok(first >= Number(atStr), `first send ${j.firstSendEpoch} before ${atStr}`);
    // "Within a few ms": 20 ms of slack for a shared 2-core VM that can deschedule the sender (seen: 5.1 ms once).
    assert.ok(first - Number(atStr) < 0.020, `first send ${j.firstSendEpoch} is ${(first - Number(atStr)) * 1000} ms after ${atStr}`);
    const past = rawpoll(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--count', '1', '--start-at', String(Math.floor(Date.now() / 1000) - 10), '--engine', engine]);
    assert.equal(past.code, 2);
    assert.match(past.stderr, /--start-at \d+ is in the past/);
  });

  test('bad flags are usage errors that name the value, before any packet', () => {
    const cases: [string[], RegExp][] = [
      [['--rate', 'fast'], /bad --rate 'fast'/],
      [['--size', '70000'], /frame size 70000 is out of range/],
      [['--engine', 'dpdk'], /bad --engine 'dpdk'/],
      [['--rate', '1kpps', '--gap', '1ms'], /--rate and --gap/],
      [['--rate', '1kpps', '--threads', '2'], /--threads > 1 is for unpaced runs/],
    ];
    for (const [args, re] of cases) {
      const r = rawpoll(L.a, ['blast', '-i', L.ifA, '--to', `${L.ipB}:9`, '--count', '1', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
  });
});
