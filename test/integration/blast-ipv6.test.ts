/**
 * rawpoll blast over IPv6 (issue 15) on a real veth pair between namespaces we create and always remove: blast → sink
 * with 100,000 frames in 8 flows (a --sport range and an IPv6 --src-ip range, sources the host does not own) and not
 * one lost, each engine — the next hop's MAC found by our own NDP, the sink's --json report and blast's validated
 * against schemas/ with ajv; frames captured on the peer (802.1Q, IMIX, flows, a bad UDP checksum) equal byte for byte
 * to what src/tx/plan.ts makes of the same templates, each engine, and --threads 2 sending every seq once; every kind of frame blast -w writes (IMIX sizes, 802.1Q, traffic class and flow label,
 * --no-seq, the 78-byte minimum) decoded by tshark with no expert info and the UDP checksum good (and exactly bad with
 * --bad-udp-checksum); and bad usage over IPv6 exits 2 with nothing on the wire (tcpdump on the peer as witness, which
 * sees the one frame of a good run that follows).
 */
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseIpv6Range, parseSizes } from '../../src/cli/blast-args.js';
import { nativeAvailable } from '../../src/link/native.js';
import { planFor, PlanWriter } from '../../src/tx/plan.js';
import { buildTemplates, makeFlows, templateFrame } from '../../src/tx/templates.js';
import { parseIpv6Addr } from '../../src/wire/ipv6.js';
import { parseMac } from '../../src/wire/mac.js';
import { parsePcap } from '../../src/wire/pcapfile.js';
import { labsForThisFile, rawpoll, rawpollAsync, sh, startTcpdump, waitFor, type TwoHostLab } from '../helpers/lab.js';
import { onesSum } from '../helpers/bytes.js';
import { valid } from '../helpers/schemas.js';
import { startSink } from '../helpers/sink.js';

interface SinkFlow { src: string; dst: string; srcIp: string; received: number; unique: number; lost: number; duplicates: number; firstSeq: number; lastSeq: number }
interface SinkReport { socketDrops: number | null; totals: { received: number; lost: number; nonPktgen: number }; flows: SinkFlow[] }

const engines = nativeAvailable() ? ['native', 'pcap'] : ['pcap'];
const { tmp, hosts } = labsForThisFile('rawpoll-blast-ipv6-');
let h: TwoHostLab;
const p = ((process.pid + 7) % 0xffff).toString(16);
const A6 = `fd00:${p}::1`;
const B6 = `fd00:${p}::2`;
/** Sources blast speaks for (not configured on A): it answers NDP for the first, the peer needs none for the rest. */
const SRC = Array.from({ length: 8 }, (_, i) => `fd00:${p}::${(0x10 + i).toString(16)}`);

before(() => {
  h = hosts();
  // lab.ns() turns IPv6 off (no autoconf chatter); this file needs it on the veth pair, with addresses that skip DAD.
  h.lab.addr6(h.a, h.ifA, `${A6}/64`);
  h.lab.addr6(h.b, h.ifB, `${B6}/64`);
});

/** tcpdump on B while `run` runs, until `n` frames matched `filter`: the captured frames. */
async function capture(n: number, filter: string, run: () => Promise<void>): Promise<Buffer[]> {
  const file = join(tmp, `cap-${Math.random().toString(36).slice(2)}.pcap`);
  const d = h.lab.spawn(h.b, ['tcpdump', '-n', '-i', h.ifB, '-B', '65536', '-U', '-c', String(n), '-w', file, filter]);
  let err = '';
  d.stderr!.on('data', (x: Buffer) => (err += x));
  assert.ok(await waitFor(() => /listening on/.test(err), 10000), err);
  await run();
  const done = await new Promise<boolean>((res) => {
    if (d.exitCode !== null) return res(true);
    const t = setTimeout(() => { d.kill('SIGINT'); res(false); }, 15000);
    d.on('exit', () => { clearTimeout(t); res(true); });
  });
  const recs = parsePcap(readFileSync(file)).records.map((r) => r.data);
  assert.ok(done, `tcpdump saw ${recs.length} of ${n} frames`);
  return recs;
}

/** The receiver's UDP check over IPv6 (RFC 8200 §8.1), summed here: 0xffff when right, 1 when made bad by one. */
function udpSum(d: Buffer, ip: number): number {
  const udp = ip + 40;
  const len = d.readUInt16BE(udp + 4);
  return onesSum(d, udp, udp + len, onesSum(Buffer.concat([d.subarray(ip + 8, ip + 40), Buffer.from([0, 0, len >> 8, len & 255, 0, 0, 0, 17])]), 0, 40));
}

/** tshark's fields of every frame of a pcap, one array per frame. */
function tshark(file: string, fields: string[]): string[][] {
  const r = sh('tshark', ['-r', file, '-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])]);
  assert.equal(r.status, 0, r.stderr?.toString());
  return r.stdout.toString().trim().split('\n').filter(Boolean).map((l) => l.split('|'));
}

/** tshark's expert summary (-z expert): empty when it has nothing to say. */
function expert(file: string): string {
  const r = sh('tshark', ['-r', file, '-o', 'udp.check_checksum:TRUE', '-q', '-z', 'expert']);
  assert.equal(r.status, 0, r.stderr?.toString());
  return r.stdout.toString().trim();
}

describe('blast over IPv6 (namespaces)', { timeout: 90000 }, () => {
  for (const engine of engines) {
    test(`${engine}: blast → sink, 100000 frames in 8 flows (--sport and IPv6 --src-ip ranges), NDP for the next hop, zero loss`, async () => {
      const n = 100000;
      const s = await startSink(h.lab, h.b, ['--port', '9', '--idle', '2', '--rcvbuf', String(8 << 20), '--expect', String(n / 8), '--json']);
      const r = await rawpollAsync(h.a, ['blast', '-i', h.ifA, '--to', `[${B6}]:9`, '--src-ip', `${SRC[0]}-${SRC[7]}`, '--sport', '10000-10003',
        '--count', String(n), '--rate', '40kpps', '--engine', engine, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const j = valid<{ sent: number; notSent: number; family: number; dst: string; flows: number; flowDesc: string; via: string; arpMs: number | null; lastSeq: number[]; bytes: number }>('blast', JSON.parse(r.stdout));
      assert.deepEqual([j.sent, j.notSent, j.family, j.dst, j.flows, j.via], [n, 0, 6, `[${B6}]:9`, 8, 'direct']);
      assert.equal(j.flowDesc, `[${SRC[0]}-${SRC[7]}]:10000-10003 -> [${B6}]:9 (8 flows)`);
      assert.ok(j.arpMs !== null, 'the MAC came from NDP');
      assert.deepEqual(j.lastSeq, new Array(8).fill(n / 8));
      assert.equal(j.bytes, n * 78, 'the default frame over IPv6 is the smallest: 78 bytes');
      const rep = valid<SinkReport>('sink', JSON.parse(await s.output()));
      assert.deepEqual([rep.totals.received, rep.totals.lost, rep.totals.nonPktgen, rep.socketDrops], [n, 0, 0, 0]);
      assert.equal(rep.flows.length, 8);
      // Flow k: the k-th source address with the (k mod 4)-th port, 12500 datagrams, seqs 1..12500, none lost.
      SRC.forEach((src, k) => {
        const f = rep.flows.find((x) => x.src === `[${src}]:${10000 + (k % 4)}`);
        assert.ok(f, `no flow from [${src}]:${10000 + (k % 4)} in ${JSON.stringify(rep.flows.map((x) => x.src))}`);
        assert.deepEqual([f.dst, f.received, f.unique, f.lost, f.duplicates, f.firstSeq, f.lastSeq], [`[${B6}]:9`, n / 8, n / 8, 0, 0, 1, n / 8]);
      });
    });
  }

  for (const engine of engines) {
    test(`${engine}: on the wire over IPv6 with 802.1Q, IMIX, 4 sources × 2 ports, --bad-udp-checksum: the plan's bytes, each off by one exactly`, async () => {
      const n = 2400;
      const srcs = SRC.slice(0, 4);
      const frames = await capture(n, `ether src ${h.macA} and vlan 7 and ip6 and udp`, async () => {
        const r = await rawpollAsync(h.a, ['blast', '-i', h.ifA, '--to', `[${B6}]:9`, '--dst-mac', h.macB, '--vlan', '7:3', '--size', '82,576,1518',
          '--imix', '7,4,1', '--src-ip', `${srcs[0]}-${srcs[3]}`, '--sport', '10000-10001', '--flows', '4', '--bad-udp-checksum',
          '--count', String(n), '--rate', '20kpps', '--engine', engine, '--json']);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout).lastSeq, [600, 600, 600, 600]);
      });
      // The same frames made here by the TS plan walker from the same templates, each with the time it carried.
      const t = buildTemplates({
        srcMac: parseMac(h.macA), dstMac: parseMac(h.macB), dstIp: parseIpv6Addr(B6, 'B'), mtu: 1500, seq: true, ipId: 'counter',
        vlan: { vid: 7, pcp: 3 }, udpChecksum: 'bad', sizes: parseSizes('82,576,1518', '7,4,1'),
        flows: makeFlows({ srcIps: parseIpv6Range(`${srcs[0]}-${srcs[3]}`), srcPorts: [10000, 10001], dstPorts: [9, 9], flows: 4 }),
      });
      const w = new PlanWriter(t, planFor(t));
      const buf = Buffer.alloc(2048);
      frames.forEach((d, i) => {
        if (udpSum(d, 18) !== 1) assert.fail(`frame ${i}: the UDP check sums to ${udpSum(d, 18)}, not 1`);
        const ti = t.order[i % t.order.length];
        w.setTime(d.readUInt32BE(t.seqOff + 8), d.readUInt32BE(t.seqOff + 12));
        w.write(buf, 0, ti, true);
        const want = buf.subarray(0, templateFrame(t, ti).length);
        if (!d.equals(want)) assert.deepEqual(d, want, `frame ${i}: not the plan's bytes`);
      });
    });
  }

  if (engines.includes('native')) {
    test('native --threads 2 over IPv6: every per-flow seq goes out exactly once, every UDP checksum right', async () => {
      const n = 6000;
      const frames = await capture(n, `ether src ${h.macA} and ip6 and udp and src portrange 100-102`, async () => {
        const r = await rawpollAsync(h.a, ['blast', '-i', h.ifA, '--to', `[${B6}]:9`, '--dst-mac', h.macB, '--count', String(n), '--threads', '2',
          '--flows', '3', '--sport', '100-102', '--size', '78,100', '--json']);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout).lastSeq, [2000, 2000, 2000]);
      });
      const seqs = new Map<number, number[]>();
      for (const [i, d] of frames.entries()) {
        if (udpSum(d, 14) !== 0xffff) assert.fail(`frame ${i}: UDP check sums to ${udpSum(d, 14)}`);
        const sport = d.readUInt16BE(54);
        seqs.set(sport, [...(seqs.get(sport) ?? []), d.readUInt32BE(66)]);
      }
      for (const port of [100, 101, 102]) {
        assert.deepEqual((seqs.get(port) ?? []).sort((a, b) => a - b), Array.from({ length: 2000 }, (_, i) => i + 1), `flow ${port}`);
      }
    });
  }

  test('blast -w over IPv6: every kind of frame decoded by tshark, no expert info, UDP checksum good (bad exactly where asked)', () => {
    const base = ['blast', '--to', `[${B6}]:9`, '--from', A6, '--src-mac', h.macA, '--dst-mac', h.macB];
    const kinds: { name: string; args: string[]; n: number; vlan?: number; tc?: string; flow?: string; seq?: boolean; bad?: boolean; sizes: number[] }[] = [
      { name: 'IMIX × 4 flows', args: ['--size', '78,576,1514', '--imix', '7,4,1', '--src-ip', `${SRC[0]}-${SRC[3]}`, '--sport', '10000-10003'], n: 48, sizes: [78, 576, 1514] },
      { name: '802.1Q', args: ['--vlan', '100:5', '--size', '82,1518'], n: 10, vlan: 100, sizes: [82, 1518] },
      { name: 'traffic class, flow label, hop limit', args: ['--tos', '0xb8', '--flow-label', '0x12345', '--ttl', '9'], n: 5, tc: '0x000000b8', flow: '0x012345', sizes: [78] },
      { name: '--no-seq', args: ['--no-seq', '--size', '62'], n: 5, seq: false, sizes: [62] },
      { name: '--bad-udp-checksum', args: ['--bad-udp-checksum'], n: 5, bad: true, sizes: [78] },
    ];
    for (const k of kinds) {
      const file = join(tmp, `${k.name.replace(/\W+/g, '_')}.pcap`);
      const r = rawpoll(h.a, [...base, ...k.args, '--count', String(k.n), '-w', file, '--json']);
      assert.equal(r.code, 0, `${k.name}: ${r.stderr}`);
      valid('blast', JSON.parse(r.stdout));
      const rows = tshark(file, ['frame.len', 'vlan.id', 'ipv6.src', 'ipv6.dst', 'ipv6.tclass', 'ipv6.flow', 'ipv6.hlim', 'ipv6.nxt', 'udp.checksum.status', 'pktgen.magic', 'pktgen.seqnum']);
      assert.equal(rows.length, k.n, k.name);
      const seqs = new Map<string, number>();
      rows.forEach(([len, vid, src, dst, tc, flow, hlim, nxt, status, magic, seq], i) => {
        const at = `${k.name}, frame ${i}`;
        assert.ok(k.sizes.includes(Number(len)), `${at}: length ${len}`);
        assert.equal(vid, k.vlan === undefined ? '' : String(k.vlan), at);
        assert.equal(dst, B6, at);
        assert.equal(nxt, '17', `${at}: UDP right behind the IPv6 header`);
        if (k.tc) assert.deepEqual([tc, flow, hlim], [k.tc, k.flow, '9'], at);
        else assert.equal(hlim, '64', at);
        // Wireshark's udp.checksum.status: 1 good, 0 bad.
        assert.equal(status, k.bad ? '0' : '1', `${at}: UDP checksum status`);
        if (k.seq === false) assert.equal(magic, '', `${at}: no test header`);
        else {
          assert.equal(magic, '0xbe9be955', `${at}: pktgen magic`);
          const next = (seqs.get(src) ?? 0) + 1;
          assert.equal(Number(seq), next, `${at}: seq of ${src}`);
          seqs.set(src, next);
        }
      });
      if (k.name.startsWith('IMIX')) assert.deepEqual([...seqs.keys()].sort(), SRC.slice(0, 4).sort());
      const e = expert(file);
      if (k.bad) assert.match(e, /Bad checksum/, `${k.name}: the corruption is the one asked for`);
      else assert.doesNotMatch(e, /Errors|Warnings|Notes|Chats/, `${k.name}: tshark has expert info:\n${e}`);
    }
  });

  test('bad usage over IPv6: exit 2 naming the option and why, nothing on the wire', async () => {
    const file = join(tmp, 'witness.pcap');
    // Frames from A that a blast would put out: UDP or a Neighbor Solicitation. The kernel's own are left out: its MLD
    // reports (not matched), its DAD probes (from ::) and its neighbour probes (from A's link-local address: blast's
    // would come from its source, global here), left out below.
    const dump = await startTcpdump(h.lab, h.b, h.ifB, file, `ether src ${h.macA} and (udp or (icmp6 and ip6[40] == 135))`);
    const cases: [string[], RegExp][] = [
      [['--df'], /--df is IPv4 only and --to \[.*\]:9 is IPv6: IPv6 has no Don't Fragment bit/],
      [['--ip-id', '7'], /--ip-id is IPv4 only .*no IP ID field/],
      [['--bad-ip-checksum'], /--bad-ip-checksum is IPv4 only .*no header checksum/],
      [['--no-udp-checksum'], /--no-udp-checksum is refused over IPv6 .*mandatory \(RFC 8200 §8\.1/],
      [['--size', '77'], /frame size 77 is out of range: expected 78-1514 bytes .*78 = Ethernet \+ 40 IPv6 \+ 8 UDP \+ 16-byte test header/],
      [['--vlan', '5', '--size', '78'], /frame size 78 is out of range: expected 82-1518/],
      [['--src-ip', '10.0.0.1'], /bad --src-ip '10\.0\.0\.1': '10\.0\.0\.1' is not an IPv6 address/],
      [['--src-ip', `${SRC[3]}-${SRC[0]}`], /runs backwards/],
      [['--from', '10.0.0.1'], /--from 10\.0\.0\.1 is IPv4 but --to .* is IPv6/],
    ];
    for (const engine of engines) {
      for (const [args, re] of cases) {
        const r = rawpoll(h.a, ['blast', '-i', h.ifA, '--to', `[${B6}]:9`, '--count', '10', '--engine', engine, ...args]);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, re, args.join(' '));
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      }
    }
    // The witness works: one good run's one frame is all it saw.
    const ok = rawpoll(h.a, ['blast', '-i', h.ifA, '--to', `[${B6}]:9`, '--dst-mac', h.macB, '--sport', '4242', '--count', '1']);
    assert.equal(ok.code, 0, ok.stderr);
    await dump.stop(1000);
    const seen = sh('tcpdump', ['-n', '-r', file]).stdout.toString().trim().split('\n').filter((l) => l && !/ IP6 (::|fe80:[0-9a-f:]*) > /.test(l));
    assert.equal(seen.length, 1, `frames on the wire from a refused run:\n${seen.join('\n')}`);
    assert.match(seen[0], new RegExp(`${A6}\\.4242 > ${B6}\\.9: UDP, length 16`));
  });
});
