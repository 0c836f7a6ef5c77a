import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { parseUdpFrame, UdpFramer } from '../../src/wire/udpframe.js';
import { parseMac } from '../../src/wire/mac.js';
import { chooseNextHop } from '../../src/resolve/nexthop.js';
import { buildArpFrame, arpReplyFilter, arpRequestFilter } from '../../src/resolve/arp.js';
import { hex, onesSum, refChecksum } from '../helpers/bytes.js';

/** What the docs promise for a deliberately bad checksum: the right value plus one, ones'-complement (0xffff -> 1). */
const onesAddOne = (c: number) => (c === 0xffff ? 1 : c + 1);
/** The right IPv4 header checksum, by the reference helper, with the field counted as 0. */
function goodIpChecksum(header: Uint8Array): number {
  const h = Buffer.from(header);
  h.writeUInt16BE(0, 10);
  return refChecksum(h);
}
/** The right UDP checksum field (a computed 0 goes out as 0xffff), by the reference helper. */
function goodUdpChecksum(pseudo: Buffer, datagram: Uint8Array): number {
  const d = Buffer.from(datagram);
  d.writeUInt16BE(0, 6);
  return refChecksum(Buffer.concat([pseudo, d])) || 0xffff;
}

const base = {
  srcMac: parseMac('02:00:00:00:00:01'), dstMac: parseMac('02:00:00:00:00:02'),
  srcIp: 0x0a000001, dstIp: 0x0a000002, srcPort: 6665, dstPort: 6666,
};

/** The frame netpoll would send for "hello" with IP ID 1, written out field by field (PROTOCOLS.md §1). */
function expectedFrame(payload: Buffer, id: number): Buffer {
  const udpLen = 8 + payload.length;
  const ip = hex(`4500 ${(20 + udpLen).toString(16).padStart(4, '0')} ${id.toString(16).padStart(4, '0')} 0000 4011 0000 0a000001 0a000002`);
  ip.writeUInt16BE(refChecksum(ip), 10);
  const udp = Buffer.concat([hex(`1a09 1a0a ${udpLen.toString(16).padStart(4, '0')} 0000`), payload]);
  let c = refChecksum(Buffer.concat([hex(`0a000001 0a000002 0011 ${udpLen.toString(16).padStart(4, '0')}`), udp]));
  if (c === 0) c = 0xffff;
  udp.writeUInt16BE(c, 6);
  const f = Buffer.concat([hex('020000000002 020000000001 0800'), ip, udp]);
  return f.length < 60 ? Buffer.concat([f, Buffer.alloc(60 - f.length)]) : f;
}

test('UdpFramer: netpoll profile frame equals the hand-built bytes (short frame padded to 60)', () => {
  const fr = new UdpFramer(base, 1472);
  const p = Buffer.from('hello');
  assert.deepEqual(Buffer.from(fr.build(p, 1)), expectedFrame(p, 1));
});

test('UdpFramer: consecutive builds with new IDs and payloads stay correct (template reuse)', () => {
  const fr = new UdpFramer(base, 1472);
  for (let i = 0; i < 300; i++) {
    const p = randomBytes((i * 37) % 1473);
    assert.deepEqual(Buffer.from(fr.build(p, i + 1)), expectedFrame(p, i + 1), `iteration ${i}`);
  }
});

test('UdpFramer: VLAN tag, TTL/TOS/DF, --size padding and corruption options', () => {
  const fr = new UdpFramer({ ...base, vlan: { vid: 100, pcp: 5 }, ttl: 7, tos: 0x10, df: true, frameSize: 128, udpChecksum: 'bad', ipChecksum: 'bad' }, 1472);
  const f = fr.build(Buffer.from('x'), 42);
  assert.equal(f.length, 128);
  assert.deepEqual(f.subarray(12, 18), hex('8100 a064 0800'));
  const ip = f.subarray(18, 38);
  assert.equal(ip[1], 0x10);
  assert.equal(ip.readUInt16BE(2), 128 - 18);
  assert.equal(ip.readUInt16BE(4), 42);
  assert.equal(ip.readUInt16BE(6), 0x4000);
  assert.equal(ip[8], 7);
  // The documented bad value (corruptChecksum, --bad-ip-checksum/--bad-udp-checksum): the right one + 1 in
  // ones'-complement arithmetic, so a receiver's sum comes to 0x0001 instead of 0xffff — exactly, not just "wrong".
  assert.equal(ip.readUInt16BE(10), onesAddOne(goodIpChecksum(ip)));
  assert.equal(onesSum(ip, 0, 20), 0x0001);
  const udpLen = f.readUInt16BE(38 + 4);
  assert.equal(udpLen, 128 - 38);
  const pseudo = hex(`0a000001 0a000002 0011 ${udpLen.toString(16).padStart(4, '0')}`);
  assert.equal(f.readUInt16BE(38 + 6), onesAddOne(goodUdpChecksum(pseudo, f.subarray(38))));
  assert.equal(onesSum(f, 38, 128, onesSum(pseudo, 0, 12)), 0x0001);
  const parsed = parseUdpFrame(f)!;
  assert.equal(parsed.vlan?.vid, 100);
  assert.equal(parsed.payload.length, 128 - 46);
  assert.equal(parsed.payload[0], 'x'.charCodeAt(0));
  assert.ok(parsed.payload.subarray(1).every((b) => b === 0));
});

test('UdpFramer: --no-udp-checksum writes 0; setPorts changes the ports and keeps the checksum right', () => {
  const fr = new UdpFramer({ ...base, udpChecksum: 'none' }, 1472);
  assert.equal(fr.build(Buffer.from('abc'), 1).readUInt16BE(40), 0);
  const fr2 = new UdpFramer(base, 1472);
  fr2.setPorts(20024, 20023);
  const f = fr2.build(Buffer.from('abc'), 1);
  const p = parseUdpFrame(f)!;
  assert.equal(p.srcPort, 20024);
  assert.equal(p.dstPort, 20023);
  assert.equal(refChecksum(Buffer.concat([hex('0a000001 0a000002 0011 000b'), f.subarray(34, 45)])), 0);
});

test('parseUdpFrame: rejects non-UDP, fragments and truncated frames', () => {
  const fr = new UdpFramer(base, 1472);
  const good = Buffer.from(fr.build(Buffer.from('hello world'), 1));
  assert.ok(parseUdpFrame(good));
  const arp = buildArpFrame(1, base.srcMac, 1, Buffer.alloc(6, 0xff), Buffer.alloc(6), 2);
  assert.equal(parseUdpFrame(arp), null);
  const frag = Buffer.from(good);
  frag.writeUInt16BE(0x2000, 20); // MF
  assert.equal(parseUdpFrame(frag), null);
  assert.equal(parseUdpFrame(good.subarray(0, 40)), null);
  const lying = Buffer.from(good);
  lying.writeUInt16BE(200, 38); // UDP length beyond the IP datagram
  assert.equal(parseUdpFrame(lying), null);
});

test('next hop: gateway only for off-link targets (or when no prefix is known)', () => {
  assert.deepEqual(chooseNextHop(0x0a000002, undefined, { ip: 0x0a000001, prefix: 24 }), { ip: 0x0a000002, via: 'direct' });
  assert.deepEqual(chooseNextHop(0x0a090909, 0x0a0000fe, { ip: 0x0a000001, prefix: 24 }), { ip: 0x0a0000fe, via: 'gateway' });
  assert.deepEqual(chooseNextHop(0x0a000009, 0x0a0000fe, { ip: 0x0a000001, prefix: 24 }), { ip: 0x0a000009, via: 'direct' });
  assert.deepEqual(chooseNextHop(0x0a000009, 0x0a0000fe, { ip: 0x0a000001 }), { ip: 0x0a0000fe, via: 'gateway' });
});

test('ARP frames and BPF filters', () => {
  const f = buildArpFrame(1, base.srcMac, 0x0a000001, Buffer.alloc(6, 0xff), Buffer.alloc(6), 0x0a000002);
  assert.equal(f.length, 60);
  assert.deepEqual(f.subarray(0, 42), hex('ffffffffffff 020000000001 0806 0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002'));
  assert.equal(arpReplyFilter(0x0a000002), 'arp and arp[6:2] = 2 and arp[14:4] = 0x0a000002');
  assert.equal(arpRequestFilter(0x0a000007), 'arp and arp[6:2] = 1 and arp[24:4] = 0x0a000007');
});

test('UdpFramer: options passed as undefined keep netpoll defaults (TTL 64, TOS 0, DF clear)', () => {
  const fr = new UdpFramer({ ...base, ttl: undefined, tos: undefined, df: undefined, ipChecksum: undefined, udpChecksum: undefined }, 1472);
  const p = Buffer.from('defaults');
  assert.deepEqual(Buffer.from(fr.build(p, 3)), expectedFrame(p, 3));
});

test('patchIpId: in-place ID change with RFC 1624 equals a fresh build (all IDs around the wrap)', async () => {
  const { patchIpId } = await import('../../src/wire/udpframe.js');
  const fr = new UdpFramer(base, 1472);
  const fresh = new UdpFramer(base, 1472);
  const p = Buffer.from('repeat me');
  const f = Buffer.from(fr.build(p, 65530));
  for (let id = 65531; id < 65536 + 40; id++) {
    patchIpId(f, fr.ipOff, id & 0xffff);
    assert.deepEqual(f, Buffer.from(fresh.build(p, id & 0xffff)), `id ${id & 0xffff}`);
  }
  const vl = new UdpFramer({ ...base, vlan: { vid: 5 } }, 1472);
  const g = Buffer.from(vl.build(p, 1));
  patchIpId(g, vl.ipOff, 2);
  assert.deepEqual(g, Buffer.from(new UdpFramer({ ...base, vlan: { vid: 5 } }, 1472).build(p, 2)));
});

test('UdpFramer: bad checksums are exactly the documented value on every build, and stay so through patchIpId', async () => {
  const { patchIpId } = await import('../../src/wire/udpframe.js');
  const bad = new UdpFramer({ ...base, ipChecksum: 'bad', udpChecksum: 'bad' }, 1472);
  const good = new UdpFramer(base, 1472);
  for (let i = 0; i < 200; i++) {
    const p = randomBytes((i * 53) % 1473);
    const g = Buffer.from(good.build(p, i));
    const b = Buffer.from(bad.build(p, i));
    assert.equal(b.readUInt16BE(24), onesAddOne(g.readUInt16BE(24)), `IP, build ${i}`);
    assert.equal(b.readUInt16BE(40), onesAddOne(g.readUInt16BE(40)), `UDP, build ${i}`);
    assert.equal(onesSum(b, 14, 34), 0x0001);
    assert.deepEqual(b.subarray(0, 24), g.subarray(0, 24));
    assert.deepEqual(b.subarray(26, 40), g.subarray(26, 40));
    assert.deepEqual(b.subarray(42), g.subarray(42));
  }
  // A repeated datagram re-stamped with RFC 1624 keeps the bad IP checksum exactly bad (as the blast engines rely on).
  const f = Buffer.from(bad.build(Buffer.from('repeat me'), 1));
  for (let id = 2; id < 3000; id += 7) {
    patchIpId(f, bad.ipOff, id);
    assert.equal(f.readUInt16BE(24), onesAddOne(goodIpChecksum(f.subarray(14, 34))), `id ${id}`);
  }
});

test('UdpFramer: a datagram whose UDP sum is 0 gets 0xffff, and with --bad-udp-checksum 0x0001 (never 0)', () => {
  const good = new UdpFramer(base, 1472);
  const bad = new UdpFramer({ ...base, udpChecksum: 'bad' }, 1472);
  const p = Buffer.alloc(2);
  for (let v = 0; v < 0x10000; v++) {
    p.writeUInt16BE(v, 0);
    const f = good.build(p, 1);
    if (f.readUInt16BE(40) !== 0xffff) continue;
    assert.equal(refChecksum(Buffer.concat([hex('0a000001 0a000002 0011 000a'), hex('1a09 1a0a 000a 0000'), p])), 0, 'the computed sum was 0');
    assert.equal(bad.build(p, 1).readUInt16BE(40), 0x0001);
    return;
  }
  assert.fail('no zero-sum payload found');
});

test('locateUdp accepts exactly what the views accept (one-byte mutations of a plain and a tagged frame)', async () => {
  const { locateUdp } = await import('../../src/wire/udpframe.js');
  const { EthernetView, ETHERTYPE_IPV4, ETHERTYPE_VLAN } = await import('../../src/wire/ethernet.js');
  const { VlanView } = await import('../../src/wire/vlan.js');
  const { Ipv4View, IPPROTO_UDP } = await import('../../src/wire/ipv4.js');
  const { UdpView } = await import('../../src/wire/udp.js');
  /** The rules spelled out with the throwing checked() views. */
  const byViews = (f: Buffer): boolean => {
    try {
      const eth = EthernetView.checked(f);
      let type = eth.ethertype;
      let ip = eth.payloadOffset;
      if (type === ETHERTYPE_VLAN) {
        const tag = VlanView.checked(f, ip);
        type = tag.ethertype;
        ip = tag.payloadOffset;
      }
      if (type !== ETHERTYPE_IPV4) return false;
      const v = Ipv4View.checked(f, ip);
      if (v.protocol !== IPPROTO_UDP || v.isFragment) return false;
      UdpView.checked(f, v.payloadOffset, ip + v.totalLength);
      return true;
    } catch {
      return false;
    }
  };
  const at = { ip: 0, udp: 0, udpLen: 0 };
  let accepted = 0;
  for (const opts of [base, { ...base, vlan: { vid: 7 } }]) {
    const good = Buffer.from(new UdpFramer(opts, 1472).build(Buffer.from('hello, world'), 1));
    for (let i = 0; i < 60; i++) {
      for (const x of [0x00, 0x01, 0x0f, 0x11, 0x45, 0x46, 0x80, 0xff]) {
        const f = Buffer.from(good);
        f[i] = x;
        const ok = locateUdp(f, at);
        assert.equal(ok, byViews(f), `byte ${i} = 0x${x.toString(16)}`);
        if (ok) accepted++;
      }
    }
    for (let n = 0; n <= good.length; n++) assert.equal(locateUdp(good.subarray(0, n), at), byViews(good.subarray(0, n)), `length ${n}`);
  }
  assert.ok(accepted > 500, `the sweep also covers accepted frames (${accepted})`);
});
