/**
 * The IPv6 halves of the sender and of netconsole's config string, without a NIC: UdpSender.over on a recording link
 * (frames compared with what a fresh Udp6Framer builds, and checked against a hand-written pseudo-header), the usage
 * errors that name the IPv4-only options, and the kernel's config grammar with bare IPv6 addresses
 * (netpoll_parse_options: `@/,@fd00:1:2:3::1/`, one family for both addresses).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../src/errors.js';
import { UdpSender } from '../../src/tx/sender.js';
import { parseNetconsoleConfig } from '../../src/proto/netconsole.js';
import { parseIpv6Addr } from '../../src/wire/ipv6.js';
import { parseMac } from '../../src/wire/mac.js';
import { Udp6Framer } from '../../src/wire/udpframe.js';
import { RecordingLink } from '../helpers/recordlink.js';
import { refChecksum } from '../helpers/bytes.js';

const flow = {
  family: 6 as const,
  srcMac: parseMac('02:00:00:00:00:01'), dstMac: parseMac('02:00:00:00:00:02'),
  srcIp6: parseIpv6Addr('fd00::1', 'src'), dstIp6: parseIpv6Addr('fd00::2', 'dst'), srcPort: 6665, dstPort: 6666,
};

test('UdpSender.over an IPv6 flow: the frames a fresh Udp6Framer builds; sendRepeated sends the same bytes; describe() writes [v6]:port', () => {
  const link = new RecordingLink();
  const s = UdpSender.over(link, flow);
  s.send(Buffer.from('one'));
  s.sendRepeated(Buffer.from('two'), 3);
  const fr = new Udp6Framer(flow, 1452);
  assert.deepEqual(link.frames[0], Buffer.from(fr.build(Buffer.from('one'), 0)));
  const two = Buffer.from(fr.build(Buffer.from('two'), 0));
  for (const f of link.frames.slice(1)) assert.deepEqual(f, two);
  const pseudo = Buffer.concat([flow.srcIp6, flow.dstIp6, Buffer.from([0, 0, 0, 11, 0, 0, 0, 17])]);
  assert.equal(refChecksum(Buffer.concat([pseudo, two.subarray(54, 65)])), 0);
  assert.equal(s.family, 6);
  assert.equal(s.maxPayload, 1452);
  const d = s.describe();
  assert.deepEqual([d.src, d.dst, d.srcIp, d.dstIp], ['[fd00::1]:6665', '[fd00::2]:6666', 'fd00::1', 'fd00::2']);
  assert.throws(() => s.send(Buffer.alloc(1453)), (e: unknown) => e instanceof UsageError && /at most 1452 bytes: MTU - 40 IPv6 - 8 UDP/.test(e.message));
  assert.equal(link.udp().every((p) => p.family === 6), true);
});

test('UdpSender.over refuses the IPv4-only options on an IPv6 flow, each by name, and closes the link', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ df: true }, /^--df is IPv4 only/],
    [{ ipId: 7 }, /^--ip-id is IPv4 only/],
    [{ ipChecksum: 'bad' }, /^--bad-ip-checksum is IPv4 only/],
    [{ udpChecksum: 'none' }, /^--no-udp-checksum is refused over IPv6: the UDP checksum is mandatory there \(RFC 8200 §8\.1/],
    [{ flowLabel: 0x100000 }, /^bad IPv6 flow label '1048576': expected an integer 0-1048575/],
  ];
  for (const [extra, re] of cases) {
    const link = new RecordingLink();
    assert.throws(() => UdpSender.over(link, { ...flow, ...extra }), (e: unknown) => e instanceof UsageError && re.test(e.message), JSON.stringify(extra));
    assert.equal(link.closed, true);
    assert.equal(link.frames.length, 0);
  }
});

test('UdpSender.open: families must agree, link-local targets need -i, before any I/O', async () => {
  const to = { family: 6 as const, ip6: parseIpv6Addr('fd00::2', 'to'), port: 9 };
  const macs = { dstMac: flow.dstMac, srcMac: flow.srcMac, link: new RecordingLink() };
  await assert.rejects(UdpSender.open({ to, from: { ip: 0x0a000001 }, ...macs }),
    (e: unknown) => e instanceof UsageError && e.message === '--to fd00::2 and --from 10.0.0.1 are different families: give an IPv6 --from like [fd00::7]:5000 (or an IPv4 --to)');
  await assert.rejects(UdpSender.open({ to: { ip: 0x0a000002, port: 9 }, from: { family: 6, ip6: flow.srcIp6 }, ...macs, link: new RecordingLink() }),
    (e: unknown) => e instanceof UsageError && /^--to 10\.0\.0\.2 and --from fd00::1 are different families/.test(e.message));
  await assert.rejects(UdpSender.open({ to, gateway: 0x0a0000fe, from: { family: 6, ip6: flow.srcIp6 }, ...macs, link: new RecordingLink() }),
    (e: unknown) => e instanceof UsageError && /and --gateway 10\.0\.0\.254 are different families/.test(e.message));
  await assert.rejects(UdpSender.open({ to: { family: 6, ip6: parseIpv6Addr('fe80::2', 'to'), port: 9 } }),
    (e: unknown) => e instanceof UsageError && /^--to fe80::2 is link-local \(fe80::\/10\): it is only reachable through one interface; name it with -i IF$/.test(e.message));
  // Offline into a link with every address given: a link-local target is fine (no interface to choose).
  const link = new RecordingLink();
  const s = await UdpSender.open({ to: { family: 6, ip6: parseIpv6Addr('fe80::2', 'to'), port: 9 }, from: { family: 6, ip6: parseIpv6Addr('fe80::1', 'from') }, ...macs, link });
  s.send(Buffer.from('ll'));
  await s.close();
  assert.equal(link.frames.length, 1);
  assert.equal(s.describe().dst, '[fe80::2]:9');
});

test('netconsole config with IPv6: bare addresses as the kernel writes them, defaults, dev as a MAC, several targets', () => {
  const [t] = parseNetconsoleConfig('@/,@fd00:1:2:3::1/');
  assert.deepEqual({ ...t, dstMac: t.dstMac, devMac: t.devMac }, {
    extended: false, release: false, srcPort: 6665, src: null, dev: null, devMac: null, dstPort: 6666,
    dst: { family: 6, ip6: parseIpv6Addr('fd00:1:2:3::1', 'x') }, dstMac: null,
  });
  const [u, v] = parseNetconsoleConfig('+r4444@fd00::7/02:00:00:00:00:07,9353@fd00::9/12:34:56:78:9a:bc;@10.0.0.1/eth0,@10.0.0.2/');
  assert.deepEqual([u.extended, u.release, u.srcPort, u.dstPort], [true, true, 4444, 9353]);
  assert.deepEqual(u.src, { family: 6, ip6: parseIpv6Addr('fd00::7', 'x') });
  assert.deepEqual(u.dst, { family: 6, ip6: parseIpv6Addr('fd00::9', 'x') });
  assert.deepEqual([...u.devMac!], [2, 0, 0, 0, 0, 7]);
  assert.deepEqual([...u.dstMac!], [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc]);
  assert.deepEqual([v.src, v.dst, v.dev], [{ family: 4, ip: 0x0a000001 }, { family: 4, ip: 0x0a000002 }, 'eth0']);
});

test('netconsole config with IPv6: refused as the kernel refuses, each error naming the part', () => {
  const cases: Array<[string, RegExp]> = [
    ['@10.0.0.1/eth0,@fd00::2/', /source IP 10\.0\.0\.1 and target IP fd00::2 are different families/],
    ['@fd00::1/eth0,@10.0.0.2/', /source IP fd00::1 and target IP 10\.0\.0\.2 are different families/],
    ['@/eth0,@fd00::zz/', /at 'fd00::zz': target IP must be an IPv4 address like 10\.0\.0\.9 or an IPv6 one like fd00::9/],
    ['@[fd00::1]/eth0,@fd00::2/', /at '\[fd00::1\]': source IP must be/],
    ['@fe80::1%eth0/eth0,@fe80::2/', /no zone: the device names the link/],
    ['x@/eth0,@fd00::2/', /source port must be a number 0-65535/],
    ['@/eth0,@fd00::2', /missing '\/' after the target IP/],
    ['@/eth0,@fd00::2/zz', /target MAC must be six hex bytes/],
    ['@/,@fd00::2/;', /empty target/],
  ];
  for (const [s, re] of cases) {
    assert.throws(() => parseNetconsoleConfig(s), (e: unknown) => e instanceof UsageError && re.test(e.message), s);
  }
});
