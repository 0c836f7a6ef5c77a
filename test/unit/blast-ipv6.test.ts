/**
 * blast over IPv6 (issue 15): the Ethernet[/802.1Q]/IPv6/UDP/pktgen templates against frames laid out here from
 * the RFC 8200 / RFC 768 field positions (hand-written offsets, not the codecs' names), the patch plan for IPv6 (no IP
 * ID, no header checksum: seq and timestamps feeding the UDP checksum only), and every frame the JS and C plan walkers
 * make checked by re-summing its UDP checksum over the IPv6 pseudo-header with the test's own RFC 1071 sum — several
 * flows (ports and an IPv6 --src-ip range), sizes, VLAN, bad checksums, and every value of the seq's low word. Then
 * the 78-byte minimum, the IPv4-only options refused, and the CLI's IPv6 grammar.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDestinationAny, parseIpv6Range, parseSizes, refuseOverIpv6 } from '../../src/cli/blast-args.js';
import { describeFlows } from '../../src/cli/blast.js';
import { tryLoadAddon } from '../../src/link/addon.js';
import { encodePlan, planFor, PlanWriter } from '../../src/tx/plan.js';
import { buildTemplates, makeFlows, sizeLimits, templateFrame, type TemplateOptions, type Templates } from '../../src/tx/templates.js';
import { refChecksum } from '../helpers/bytes.js';
import { writerPair } from '../helpers/planpair.js';

const v6 = (s: string) => {
  // fd00::N written out by hand: 8 groups, no ipaddr.js.
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.map((g) => g.padStart(4, '0')).join(''), 'hex');
};
const SRC_MAC = Buffer.from([2, 0, 0, 0, 0, 1]);
const DST_MAC = Buffer.from([2, 0, 0, 0, 0, 2]);
const A = v6('fd00::1');
const B = v6('fd00::2');

function templates(o: Partial<TemplateOptions> = {}): Templates {
  return buildTemplates({
    srcMac: SRC_MAC, dstMac: DST_MAC, dstIp: B, flows: makeFlows({ srcIps: [A], srcPorts: [100, 102], dstPorts: [9, 9] }),
    sizes: parseSizes('78,576,1514', '7,4,1'), seq: true, mtu: 1500, ipId: 'counter', ...o,
  });
}

/**
 * The frame RFC 8200 §3 and RFC 768 describe, byte by byte at literal offsets: Ethernet (type 0x86dd, or 0x8100 +
 * tag), IPv6 (version 6, class/label 0, payload length, next header 17, hop limit 64, addresses), UDP, pktgen header
 * (magic 0xbe9be955, seq, tv_sec, tv_usec), zeros; the UDP checksum over the pseudo-header (src, dst, 32-bit length,
 * zeros, 17) summed here.
 */
function expected(size: number, f: { src: Buffer; sport: number; dport: number; seq: number; sec: number; usec: number; vlan?: number; bad?: boolean }): Buffer {
  const d = Buffer.alloc(size);
  DST_MAC.copy(d, 0);
  SRC_MAC.copy(d, 6);
  let ip = 14;
  if (f.vlan !== undefined) {
    d.writeUInt16BE(0x8100, 12);
    d.writeUInt16BE(f.vlan, 14);
    ip = 18;
  }
  d.writeUInt16BE(0x86dd, ip - 2);
  d.writeUInt32BE(0x60000000, ip);
  const udp = ip + 40;
  const udpLen = size - udp;
  d.writeUInt16BE(udpLen, ip + 4);
  d[ip + 6] = 17;
  d[ip + 7] = 64;
  f.src.copy(d, ip + 8);
  B.copy(d, ip + 24);
  d.writeUInt16BE(f.sport, udp);
  d.writeUInt16BE(f.dport, udp + 2);
  d.writeUInt16BE(udpLen, udp + 4);
  d.writeUInt32BE(0xbe9be955, udp + 8);
  d.writeUInt32BE(f.seq, udp + 12);
  d.writeUInt32BE(f.sec, udp + 16);
  d.writeUInt32BE(f.usec, udp + 20);
  const pseudo = Buffer.concat([f.src, B, Buffer.from([0, 0, udpLen >> 8, udpLen & 255, 0, 0, 0, 17])]);
  let c = refChecksum(Buffer.concat([pseudo, d.subarray(udp, size)]));
  if (c === 0) c = 0xffff;
  if (f.bad) c = c === 0xffff ? 1 : c + 1;
  d.writeUInt16BE(c, udp + 6);
  return d;
}

/** The receiver's check: the ones'-complement sum over pseudo-header + datagram, 0xffff when right (1 when made bad). */
function udpSum(d: Buffer, ip: number): number {
  const udp = ip + 40;
  const len = d.readUInt16BE(udp + 4);
  const c = refChecksum(Buffer.concat([d.subarray(ip + 8, ip + 40), Buffer.from([0, 0, len >> 8, len & 255, 0, 0, 0, 17]), d.subarray(udp, udp + len)]));
  return ~c & 0xffff;
}

test('IPv6 templates: byte for byte the RFC 8200 layout, one per flow and size; no IP ID, nothing for an IPv4 checksum', () => {
  const t = templates();
  assert.equal(t.family, 6);
  assert.deepEqual([t.ipOff, t.udpOff, t.seqOff, t.ipIdStart], [14, 54, 62, -1]);
  assert.equal(t.offsets.length, 9); // 3 flows × 3 sizes
  for (let fi = 0; fi < 3; fi++) {
    for (const [si, size] of [78, 576, 1514].entries()) {
      const got = templateFrame(t, fi * 3 + si);
      assert.deepEqual(got, expected(size, { src: A, sport: 100 + fi, dport: 9, seq: 0, sec: 0, usec: 0 }), `flow ${fi} size ${size}`);
    }
  }
  // 802.1Q: the tag in front of the ethertype, everything 4 bytes on.
  const tv = templates({ vlan: { vid: 100, pcp: 5 }, sizes: parseSizes('82', undefined) });
  assert.deepEqual(templateFrame(tv, 0), expected(82, { src: A, sport: 100, dport: 9, seq: 0, sec: 0, usec: 0, vlan: (5 << 13) | 100 }));
  assert.deepEqual([tv.ipOff, tv.udpOff, tv.seqOff], [18, 58, 66]);
  // --tos / --ttl / --flow-label: traffic class, hop limit and flow label in the first 8 bytes; the checksum follows.
  const tc = templateFrame(templates({ tos: 0xb8, ttl: 5, flowLabel: 0x12345, sizes: parseSizes('78', undefined) }), 0);
  assert.deepEqual([tc.readUInt32BE(14), tc[21]], [0x6b812345, 5]);
  assert.equal(udpSum(tc, 14), 0xffff);
});

test('IPv6 plan: seq, tv_sec, tv_usec feed the UDP checksum; no IP ID, no IPv4 rule; 802.1Q moves it by 4', () => {
  const p = planFor(templates());
  // Ethernet 14 | IPv6 14..54 | UDP 54..62 (checksum 60) | pktgen 62.. (seq 66, tv 70, 74).
  assert.deepEqual(p, {
    checksums: [{ offset: 60, rule: 'udp', corrupt: false }],
    patches: [
      { offset: 66, width: 4, source: 'flowSeq', checksum: 60 },
      { offset: 70, width: 4, source: 'tvSec', checksum: 60 },
      { offset: 74, width: 4, source: 'tvUsec', checksum: 60 },
    ],
  });
  assert.deepEqual([...encodePlan(p)], [1, 3, 60, 1, 0, 66, 4, 1, 0, 70, 4, 2, 0, 74, 4, 3, 0]);
  const tagged = planFor(templates({ vlan: { vid: 5 }, sizes: parseSizes('82', undefined), udpChecksum: 'bad' }));
  assert.deepEqual(tagged.checksums, [{ offset: 64, rule: 'udp', corrupt: true }]);
  assert.deepEqual(tagged.patches.map((x) => x.offset), [70, 74, 78]);
  // --no-seq over IPv6: nothing changes per frame (and no IP ID counter to keep).
  assert.deepEqual(planFor(templates({ seq: false, sizes: parseSizes('62', undefined) })), { checksums: [], patches: [] });
});

test('PlanWriter over IPv6: 4 flows from an --src-ip range × IMIX, every frame equal to the RFC layout summed from scratch', () => {
  const srcs = parseIpv6Range('fd00::10-fd00::13');
  const t = templates({ flows: makeFlows({ srcIps: srcs, srcPorts: [10000, 10001], dstPorts: [9, 9], flows: 4 }) });
  const w = new PlanWriter(t, planFor(t));
  const dst = Buffer.alloc(1514);
  const seqs = [1, 1, 1, 1];
  for (let i = 0; i < 96; i++) {
    const ti = t.order[i % t.order.length];
    const fi = t.flowOf[ti];
    w.setTime(1795000000 + i, (i * 7919) % 1e6);
    w.write(dst, 0, ti, true);
    const len = t.lengths[ti];
    const want = expected(len, { src: srcs[fi], sport: 10000 + (fi % 2), dport: 9, seq: seqs[fi]++, sec: 1795000000 + i, usec: (i * 7919) % 1e6 });
    assert.deepEqual(dst.subarray(0, len), want, `frame ${i} (flow ${fi}, ${len} bytes)`);
    assert.equal(udpSum(dst, 14), 0xffff);
  }
  assert.deepEqual([...w.seqs], seqs);
});

for (const bad of [false, true]) {
  test(`every seq low word (65536 frames), ${bad ? 'bad' : 'good'} UDP checksum over IPv6: the pseudo-header sum comes to ${bad ? '1' : '0xffff'}, never a 0 field`, () => {
    const t = templates({ sizes: parseSizes('78', undefined), flows: makeFlows({ srcIps: [A], srcPorts: [9, 9], dstPorts: [9, 9] }), udpChecksum: bad ? 'bad' : 'good' });
    const w = new PlanWriter(t, planFor(t));
    const dst = Buffer.alloc(78);
    w.setTime(0x6a5f_1234, 0x000f_423f);
    w.seqs[0] = 0x1234_0000;
    let ffff = 0;
    for (let i = 0; i < 65536; i++) {
      w.write(dst, 0, 0, i === 0);
      const s = udpSum(dst, 14);
      if (s !== (bad ? 1 : 0xffff)) assert.fail(`frame ${i}: sum ${s.toString(16)}`);
      if (dst.readUInt16BE(60) === 0) assert.fail(`frame ${i}: a zero UDP checksum over IPv6`);
      if (dst.readUInt16BE(60) === (bad ? 1 : 0xffff)) ffff++;
      if (dst.readUInt32BE(66) !== 0x1234_0000 + i) assert.fail(`frame ${i}: seq ${dst.readUInt32BE(66)}`);
    }
    // The computed 0 came up once and went out as 0xffff (RFC 8200 §8.1, as RFC 768); made bad, as 0x0001.
    assert.equal(ffff, 1);
  });
}

const native = !!tryLoadAddon()?.planWriter;

for (const [name, o] of [
  ['4 flows × IMIX', {}],
  ['802.1Q, bad UDP checksum, 16 source addresses', {
    vlan: { vid: 7, pcp: 3 }, udpChecksum: 'bad', sizes: parseSizes('82,200,1518', undefined),
    flows: makeFlows({ srcIps: parseIpv6Range('fd00::10-fd00::1f'), srcPorts: [1000, 1003], dstPorts: [9, 9], flows: 16 }),
  }],
] as [string, Partial<TemplateOptions>][]) {
  test(`C plan walker = PlanWriter over IPv6 (${name}), 20000 frames in groups, each checksum re-summed`, { skip: !native && 'the addon is not built' }, () => {
    const { c, js, bufs, offs, lens, fill } = writerPair(templates(o));
    const ip = o.vlan ? 18 : 14;
    const want = o.udpChecksum === 'bad' ? 1 : 0xffff;
    let pos = 0;
    for (let g = 0, total = 0; total < 20000; g++) {
      const m = 1 + ((g * 37) % 64);
      fill(pos, m, 1795000000 + g, (g * 7919) % 1e6, g);
      for (let i = 0; i < m; i++) {
        const f = bufs[0].subarray(offs[0][i], offs[0][i] + lens[0][i]);
        const s = udpSum(f, ip);
        if (s !== want) assert.fail(`group ${g} frame ${i}: UDP sum ${s.toString(16)}`);
      }
      pos += m;
      total += m;
    }
    assert.deepEqual(c.counters(), js.counters());
  });
}

test('sizes over IPv6: 78 bytes is the smallest pktgen frame (82 tagged, 62 without the test header), errors name 78 to MTU+14', () => {
  assert.deepEqual(sizeLimits({ mtu: 1500, seq: true, family: 6 }), { min: 78, max: 1514 });
  assert.deepEqual(sizeLimits({ mtu: 1500, seq: true, family: 6, vlan: { vid: 1 } }), { min: 82, max: 1518 });
  assert.deepEqual(sizeLimits({ mtu: 9000, seq: false, family: 6 }), { min: 62, max: 9014 });
  assert.deepEqual(sizeLimits({ mtu: 1500, seq: true }), { min: 60, max: 1514 }, 'IPv4 as before');
  assert.throws(() => templates({ sizes: parseSizes('77', undefined) }), /frame size 77 is out of range for this link: 78-1514 bytes .*78 = headers \+ 16-byte test header over IPv6/);
  assert.throws(() => templates({ sizes: parseSizes('1515', undefined) }), /frame size 1515 is out of range for this link: 78-1514/);
  assert.equal(templateFrame(templates({ sizes: parseSizes('78', undefined) }), 0).length, 78);
});

test('IPv4-only options are refused over IPv6, by name and why; one family per run', () => {
  assert.throws(() => templates({ ipChecksum: 'bad' }), /--bad-ip-checksum: there is no IPv6 header checksum/);
  assert.throws(() => templates({ df: true }), /--df: IPv6 has no Don't Fragment bit/);
  assert.throws(() => templates({ ipId: 7 }), /--ip-id: IPv6 has no IP ID/);
  assert.throws(() => templates({ udpChecksum: 'none' }), /--no-udp-checksum: the UDP checksum is mandatory \(RFC 8200 §8\.1/);
  assert.throws(() => templates({ flows: makeFlows({ srcIps: [0x0a000001], srcPorts: [9, 9], dstPorts: [9, 9] }) }), /IPv6 destination needs IPv6 sources/);
  assert.throws(() => templates({ dstIp: 0x0a000002, sizes: parseSizes('60', undefined) }), /IPv4 destination needs IPv4 sources/);
  assert.throws(() => templates({ dstIp: 0x0a000002, flowLabel: 1, sizes: parseSizes('60', undefined), flows: makeFlows({ srcIps: [1], srcPorts: [9, 9], dstPorts: [9, 9] }) }), /--flow-label 1 is IPv6 only/);
  const to = '[fd00::2]:9';
  assert.throws(() => refuseOverIpv6({ df: true }, to), /^UsageError: --df is IPv4 only and --to \[fd00::2\]:9 is IPv6: IPv6 has no Don't Fragment bit/);
  assert.throws(() => refuseOverIpv6({ ipId: '5' }, to), /--ip-id is IPv4 only .*no IP ID field/);
  assert.throws(() => refuseOverIpv6({ badIpChecksum: true }, to), /--bad-ip-checksum is IPv4 only .*no header checksum/);
  assert.throws(() => refuseOverIpv6({ udpChecksum: false }, to), /--no-udp-checksum is refused over IPv6 .*mandatory \(RFC 8200 §8\.1/);
  refuseOverIpv6({ udpChecksum: true }, to);
});

test('CLI grammar: --to of either family, IPv6 --src-ip ranges, IPv6 flows described in brackets', () => {
  assert.deepEqual(parseDestinationAny('[fd00::2]:9000'), { addr: { family: 6, ip6: B }, port: 9000 });
  assert.deepEqual(parseDestinationAny('fd00::2'), { addr: { family: 6, ip6: B }, port: undefined });
  assert.deepEqual(parseDestinationAny('[fd00::2]'), { addr: { family: 6, ip6: B }, port: undefined });
  assert.deepEqual(parseDestinationAny('10.0.0.2:7'), { addr: { family: 4, ip: 0x0a000002 }, port: 7 });
  assert.deepEqual(parseDestinationAny('10.0.0.2'), { addr: { family: 4, ip: 0x0a000002 }, port: undefined });
  assert.throws(() => parseDestinationAny('[fd00::zz]:9'), /bad --to 'fd00::zz'/);
  assert.deepEqual(parseIpv6Range('fd00::ffff-fd00::1:1'), [v6('fd00::ffff'), v6('fd00::1:0'), v6('fd00::1:1')]);
  assert.deepEqual(parseIpv6Range('fd00::7'), [v6('fd00::7')]);
  assert.equal(parseIpv6Range('fd00::-fd00::ffff').length, 65536);
  assert.throws(() => parseIpv6Range('fd00::-fd00::1:0'), /--src-ip range fd00::-fd00::1:0 is too wide: 65537 addresses, at most 65536/);
  assert.throws(() => parseIpv6Range('fd00::1f-fd00::10'), /runs backwards \(fd00::1f > fd00::10\); write it low-high: fd00::10-fd00::1f/);
  assert.throws(() => parseIpv6Range('10.0.0.1-10.0.0.2'), /'10\.0\.0\.1' is not an IPv6 address/);
  const flows = makeFlows({ srcIps: parseIpv6Range('fd00::10-fd00::1f'), srcPorts: [10000, 10003], dstPorts: [9, 9], flows: 16 });
  assert.equal(describeFlows(flows, B), '[fd00::10-fd00::1f]:10000-10003 -> [fd00::2]:9 (16 flows)');
  assert.equal(describeFlows(makeFlows({ srcIps: [A], srcPorts: [9, 9], dstPorts: [9, 9] }), B), '[fd00::1]:9 -> [fd00::2]:9 (1 flow)');
  assert.equal(describeFlows(makeFlows({ srcIps: [0x0a000001], srcPorts: [9, 9], dstPorts: [9, 9] }), 0x0a000002), '10.0.0.1:9 -> 10.0.0.2:9 (1 flow)');
});
