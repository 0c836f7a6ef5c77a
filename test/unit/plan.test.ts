/**
 * The per-frame patch plan (src/tx/plan.ts): which fields it names for which templates (offsets checked against the
 * hand-laid layout of PROTOCOLS.md §1 and §5), its flat form for the C loop, and PlanWriter's frames against frames
 * built here from scratch — template copied, fields written with a DataView, both checksums re-summed with the test's
 * own RFC 1071 sum — over the whole 16-bit range of the IP ID and of the seq's low word, so every checksum value
 * (0x0000 and 0xffff included) comes up, with correct and with deliberately bad checksums. Then the C walker
 * (native/src/plan.h through planwriter.cc, what both engines run) against PlanWriter, byte for byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSizes } from '../../src/cli/blast-args.js';
import { tryLoadAddon } from '../../src/link/addon.js';
import { decodePlan, encodePlan, planExtent, planFor, PlanWriter } from '../../src/tx/plan.js';
import { buildTemplates, makeFlows, templateFrame, type TemplateOptions, type Templates } from '../../src/tx/templates.js';
import { refChecksum } from '../helpers/bytes.js';
import { writerPair } from '../helpers/planpair.js';

function templates(o: Partial<TemplateOptions> = {}): Templates {
  return buildTemplates({
    srcMac: Buffer.from([2, 0, 0, 0, 0, 1]), dstMac: Buffer.from([2, 0, 0, 0, 0, 2]), dstIp: 0x0a000002,
    flows: makeFlows({ srcIps: [0x0a000001], srcPorts: [100, 102], dstPorts: [9, 9] }),
    sizes: parseSizes('64,576,1514', '7,4,1'), seq: true, mtu: 1500, ipId: 'counter', ...o,
  });
}

test('plan for the default frames: IP ID feeds the IPv4 checksum, seq and timestamps the UDP checksum', () => {
  const p = planFor(templates());
  // Ethernet 14 | IPv4 14..34 (id 18, checksum 24) | UDP 34..42 (checksum 40) | pktgen 42.. (seq 46, tv 50, 54).
  assert.deepEqual(p, {
    checksums: [{ offset: 24, rule: 'ipv4', corrupt: false }, { offset: 40, rule: 'udp', corrupt: false }],
    patches: [
      { offset: 18, width: 2, source: 'ipId', checksum: 24 },
      { offset: 46, width: 4, source: 'flowSeq', checksum: 40 },
      { offset: 50, width: 4, source: 'tvSec', checksum: 40 },
      { offset: 54, width: 4, source: 'tvUsec', checksum: 40 },
    ],
  });
  assert.equal(planExtent(p), 58);
  // The flat form the C loop reads: counts, checksums (offset, rule, corrupt), patches (offset, width, source,
  // checksum index).
  assert.deepEqual([...encodePlan(p)], [2, 4, 24, 0, 0, 40, 1, 0, 18, 2, 0, 0, 46, 4, 1, 1, 50, 4, 2, 1, 54, 4, 3, 1]);
  assert.deepEqual(decodePlan(encodePlan(p)), p);
});

test('plan follows the options: an 802.1Q tag moves every field by 4; --ip-id N, --no-udp-checksum, --no-seq drop theirs', () => {
  const vlan = planFor(templates({ vlan: { vid: 5 } }));
  assert.deepEqual(vlan.patches.map((x) => x.offset), [22, 50, 54, 58]);
  assert.deepEqual(vlan.checksums.map((c) => c.offset), [28, 44]);
  const fixedId = planFor(templates({ ipId: 7 }));
  assert.deepEqual(fixedId.checksums, [{ offset: 40, rule: 'udp', corrupt: false }]);
  assert.deepEqual(fixedId.patches.map((x) => x.source), ['flowSeq', 'tvSec', 'tvUsec']);
  const noUdp = planFor(templates({ udpChecksum: 'none' }));
  assert.deepEqual(noUdp.checksums, [{ offset: 24, rule: 'ipv4', corrupt: false }]);
  assert.deepEqual(noUdp.patches.map((x) => x.checksum), [24, null, null, null]);
  assert.deepEqual([...encodePlan(noUdp)].slice(2), [24, 0, 0, 18, 2, 0, 0, 46, 4, 1, -1, 50, 4, 2, -1, 54, 4, 3, -1]);
  const noSeq = planFor(templates({ seq: false }));
  assert.deepEqual(noSeq.patches.map((x) => x.source), ['ipId']);
  assert.deepEqual(planFor(templates({ seq: false, ipId: 0 })), { checksums: [], patches: [] });
  // A bad checksum is made in every frame, even when nothing it covers changes.
  assert.deepEqual(planFor(templates({ seq: false, ipId: 0, ipChecksum: 'bad', udpChecksum: 'bad' })), {
    checksums: [{ offset: 24, rule: 'ipv4', corrupt: true }, { offset: 40, rule: 'udp', corrupt: true }], patches: [],
  });
});

/** The documented bad checksum: the right one plus 1 in ones'-complement arithmetic (0xffff wraps to 0x0001). */
const bad = (c: number) => (c === 0xffff ? 1 : c + 1);

/** Frame `tpl` with the given fields, both checksums summed from scratch (the way a receiver checks them). */
function expected(tpl: Buffer, f: { ipId?: number; seq: number; sec: number; usec: number }, o: { ipBad?: boolean; udp?: 'good' | 'bad' | 'none' } = {}): Buffer {
  const d = Buffer.from(tpl);
  const ip = 14;
  const udp = 34;
  if (f.ipId !== undefined) d.writeUInt16BE(f.ipId, ip + 4);
  d.writeUInt32BE(f.seq, 46);
  d.writeUInt32BE(f.sec, 50);
  d.writeUInt32BE(f.usec, 54);
  d.writeUInt16BE(0, ip + 10);
  const ipc = refChecksum(d.subarray(ip, ip + 20));
  d.writeUInt16BE(o.ipBad ? bad(ipc) : ipc, ip + 10);
  if (o.udp !== 'none') {
    const len = d.readUInt16BE(udp + 4);
    d.writeUInt16BE(0, udp + 6);
    let uc = refChecksum(Buffer.concat([d.subarray(ip + 12, ip + 20), Buffer.from([0, 17, len >> 8, len & 255]), d.subarray(udp, udp + len)]));
    if (uc === 0) uc = 0xffff; // RFC 768: 0 means "no checksum"
    d.writeUInt16BE(o.udp === 'bad' ? bad(uc) : uc, udp + 6);
  }
  return d;
}

test('PlanWriter frames equal frames summed from scratch: 3 flows × IMIX, counters per flow, IP ID wrapping', () => {
  const t = templates();
  const w = new PlanWriter(t, planFor(t));
  w.ipId = 65530;
  const dst = Buffer.alloc(1514);
  const seqs = [1, 1, 1];
  for (let i = 0; i < 48; i++) {
    const ti = t.order[i % t.order.length];
    w.setTime(1795000000 + i, 999_999 - i);
    w.write(dst, 0, ti, true);
    const tpl = templateFrame(t, ti);
    const want = expected(tpl, { ipId: (65530 + i) & 0xffff, seq: seqs[t.flowOf[ti]]++, sec: 1795000000 + i, usec: 999_999 - i });
    assert.deepEqual(dst.subarray(0, tpl.length), want, `frame ${i} (template ${ti})`);
  }
  assert.deepEqual([...w.seqs], seqs);
  // A frame that did not go out gives its numbers back.
  w.unwrite(t.order[47 % t.order.length]);
  assert.equal(w.ipId, 65530 + 47);
});

for (const mode of [{ ipBad: false, udp: 'good' }, { ipBad: true, udp: 'bad' }, { ipBad: false, udp: 'none' }] as const) {
  test(`every IP ID and every seq low word (65536 frames), ${mode.ipBad ? 'bad' : 'good'} IPv4 and ${mode.udp} UDP checksums: equal to summed from scratch`, () => {
    const t = templates({
      flows: makeFlows({ srcIps: [0x0a000001], srcPorts: [9, 9], dstPorts: [9, 9] }), sizes: parseSizes('60', undefined),
      ipChecksum: mode.ipBad ? 'bad' : 'good', udpChecksum: mode.udp,
    });
    const w = new PlanWriter(t, planFor(t));
    const tpl = templateFrame(t, 0);
    const dst = Buffer.alloc(60);
    w.setTime(0x6a5f_1234, 0x000f_423f);
    w.ipId = 0;
    w.seqs[0] = 0x1234_0000;
    let zeroUdp = 0;
    for (let i = 0; i < 65536; i++) {
      w.write(dst, 0, 0, i === 0);
      const want = expected(tpl, { ipId: i, seq: 0x1234_0000 + i, sec: 0x6a5f_1234, usec: 0x000f_423f }, mode);
      if (!dst.equals(want)) assert.deepEqual(dst, want, `frame ${i}`);
      if (dst.readUInt16BE(40) === 0) zeroUdp++;
    }
    assert.equal(zeroUdp, mode.udp === 'none' ? 65536 : 0, 'a UDP checksum field is 0 only with --no-udp-checksum');
  });
}

const native = !!tryLoadAddon()?.planWriter;

for (const [name, o] of [
  ['3 flows × IMIX', {}],
  ['802.1Q, bad IPv4 and UDP checksums', { vlan: { vid: 7, pcp: 3 }, ipChecksum: 'bad', udpChecksum: 'bad' }],
  ['--no-udp-checksum, --ip-id 4660', { udpChecksum: 'none', ipId: 4660 }],
  ['--no-seq', { seq: false }],
] as [string, Partial<TemplateOptions>][]) {
  test(`C plan walker = PlanWriter byte for byte over 70000 frames in groups (${name}), rewinds included`, { skip: !native && 'the addon is not built' }, () => {
    const { c, js, offs, lens, fill } = writerPair(templates(o));
    let pos = 0;
    for (let g = 0, total = 0; total < 70000; g++) {
      const m = 1 + ((g * 37) % 64);
      fill(pos, m, 1795000000 + g, (g * 7919) % 1e6, g);
      assert.deepEqual([...offs[0].subarray(0, m)], [...offs[1].subarray(0, m)]);
      // Now and then the last frames "did not go out": both hand their numbers to the next ones.
      const back = g % 5 === 4 ? Math.min(m, 3) : 0;
      c.rewind(pos + m - back, back);
      js.rewind(pos + m - back, back);
      pos += m - back;
      total += m - back;
    }
    assert.deepEqual(c.counters(), js.counters());
    assert.throws(() => c.fill(Buffer.alloc(10), offs[0], lens[0], 0, 1, 0, 0), /fill: 1 frames need \d+ bytes, buf has 10/);
    assert.deepEqual(c.counters(), js.counters(), 'a refused fill writes and counts nothing');
  });
}
