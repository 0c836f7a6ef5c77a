/**
 * send, netconsole and oops over IPv6 against real kernels (issue 15): namespaces joined by veth pairs
 * (test/helpers/lab.ts, always removed), IPv6 turned back on for those links only, addresses added `nodad`, no
 * autoconfigured link-local (addr_gen_mode 1). Oracles other than our own parser: the peer kernel's UDPv6 socket
 * (what it delivers, from which address and port), its neighbour table (`ip -6 neigh`: what our NDP answerer told it),
 * its Udp6InCsumErrors counter (/proc/net/snmp6), a router namespace's forwarding (the hop limit it decremented, read
 * by tshark from a capture), tshark's dissectors (checksum status, expert info) and tcpdump on the peer (nothing on the
 * wire for bad usage).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Lab, labsForThisFile, must, rawpoll, RAWPOLL, sh, startTcpdump, udpReceiver, waitFor, withIpv6, type V6Lab } from '../helpers/lab.js';
import { valid } from '../helpers/schemas.js';
import { parsePcap } from '../../src/wire/pcapfile.js';

const { tmp, hosts } = labsForThisFile('rawpoll-send6-');
const extraLabs: Lab[] = [];
after(() => {
  for (const l of extraLabs) l.destroy();
});

/** A two-host lab with IPv6 on its veth pair: global and link-local addresses on both ends, no DAD, no autoconf. */
const v6hosts = (): V6Lab => withIpv6(hosts());

let caps = 0;
/**
 * tcpdump in ns on dev; stop() ends it and returns the file. MLD reports (behind a Hop-by-Hop header: next header 0)
 * are left out: the kernels send them for their own groups whenever they like, and they are not the test's.
 */
async function capture(lab: Lab, ns: string, dev: string, filter = ''): Promise<{ stop: () => Promise<string> }> {
  const td = await startTcpdump(lab, ns, dev, join(tmp, `cap-${caps++}.pcap`), `not (ip6 and ip6[6] = 0)${filter ? ` and (${filter})` : ''}`);
  return {
    stop: async () => {
      const file = await td.stop();
      if (process.env.CAPDEBUG) console.error(td.err(), sh('tcpdump', ['-n', '-r', file]).stdout.toString());
      return file;
    },
  };
}

/** tshark's fields per frame, with UDP checksums verified (ICMPv6's always are). */
function tshark(file: string, fields: string[]): string[][] {
  const out = must('tshark', ['-r', file, '-o', 'udp.check_checksum:TRUE', '-T', 'fields', ...fields.flatMap((f) => ['-e', f])]);
  return out.split('\n').filter((l) => l.length > 0).map((l) => l.split('\t'));
}

/** A counter from /proc/net/snmp6 in a namespace, e.g. snmp6(ns, 'Udp6InCsumErrors'). */
function snmp6(ns: string, field: string): number {
  const m = new RegExp(`^${field}\\s+(\\d+)$`, 'm').exec(must('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp6']));
  if (!m) throw new Error(`no ${field} in /proc/net/snmp6`);
  return Number(m[1]);
}

/** The kernel's neighbour entry for addr on dev: its MAC and state, or null (none, or no link-layer address yet). */
function neigh(ns: string, dev: string, addr: string): { mac: string; state: string } | null {
  const m = /lladdr (\S+) .*?([A-Z]+)\s*$/.exec(must('ip', ['-n', ns, '-6', 'neigh', 'show', addr, 'dev', dev]).trim());
  return m ? { mac: m[1], state: m[2] } : null;
}

test('send over IPv6: 1, 100 and 1452 (MTU - 40 - 8) bytes byte-exact at a kernel UDPv6 socket; next hop by NDP; tshark decodes the capture cleanly', async () => {
  const h = v6hosts();
  const cap = await capture(h.lab, h.b, h.ifB);
  const payloads = [randomBytes(1), randomBytes(100), randomBytes(1452)];
  const rx = await udpReceiver(h.lab, h.b, 9000, payloads.length, 8000, { family: 6 });
  for (const p of payloads) {
    const file = join(tmp, `p6-${p.length}.bin`);
    writeFileSync(file, p);
    // No --from: the source is the interface's first global address, port 6665 (netconsole's, netpoll's default).
    const r = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `[${h.net}2]:9000`, '--file', file, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as Record<string, unknown> & { arpMs: number };
    valid('send', j);
    assert.deepEqual([j.src, j.dst, j.dstMac, j.via, j.sent, j.payloadBytes, j.bytes], [`[${h.net}1]:6665`, `[${h.net}2]:9000`, h.macB, 'direct', 1, p.length, Math.max(60, 62 + p.length)]);
    assert.ok(j.arpMs > 0, 'the MAC came from our NDP');
  }
  const got = await rx.done();
  assert.equal(got.length, payloads.length);
  got.forEach((d, i) => {
    assert.deepEqual(d.data, payloads[i]);
    assert.equal(d.from, `${h.net}1`);
    assert.equal(d.port, 6665);
  });
  // One more byte than fits: refused before anything is sent, naming the IPv6 arithmetic.
  const big = join(tmp, 'p6-1453.bin');
  writeFileSync(big, randomBytes(1453));
  const r = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `[${h.net}2]:9000`, '--file', big]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^rawpoll: payload of 1453 bytes does not fit the MTU of 1500 \(at most 1452 bytes: MTU - 40 IPv6 - 8 UDP\); rawpoll does not fragment\n$/);

  const rows = tshark(await cap.stop(), ['eth.src', 'ipv6.hlim', 'icmpv6.type', 'icmpv6.checksum.status', 'udp.checksum.status', 'udp.length', '_ws.expert']);
  for (const row of rows) assert.equal(row[6], '', `expert info in ${row.join(' | ')}`);
  const udp = rows.filter((r) => r[5] !== '');
  assert.deepEqual(udp.map((r) => [r[0], r[1], r[4], Number(r[5])]), payloads.map((p) => [h.macA, '64', '1', 8 + p.length]));
  const ns = rows.filter((r) => r[2] === '135' && r[0] === h.macA);
  const na = rows.filter((r) => r[2] === '136' && r[0] === h.macB);
  assert.equal(ns.length, 3, 'one Neighbor Solicitation of ours per run');
  assert.equal(na.length, 3, "and the kernel's Advertisement to each");
  for (const r of [...ns, ...na]) assert.deepEqual([r[1], r[3]], ['255', '1'], 'NDP: hop limit 255, ICMPv6 checksum good');
});

test('send -w: every IPv6 frame kind (plain, 802.1Q, --size, hop limit/traffic class/flow label, bad UDP checksum) as tshark reads it; no root needed', () => {
  const MACS = ['--dst-mac', '02:00:00:00:00:02', '--src-mac', '02:00:00:00:00:01'];
  const run = (args: string[], file: string) => {
    const r = spawnSync(process.execPath, [RAWPOLL, 'send', '--to', '[fd00::2]:9000', '--from', '[fd00::1]:5000', ...MACS, ...args, '-w', file]);
    assert.equal(r.status, 0, r.stderr.toString());
  };
  // As nobody, with no capability: the pcap on standard output (nobody may not write into our scratch directory).
  const nobody = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, RAWPOLL,
    'send', '--to', '[fd00::2]:9000', '--from', 'fd00::1', ...MACS, '--data', 'as nobody', '-c', '2', '-w', '-'], { maxBuffer: 1 << 20 });
  assert.equal(nobody.status, 0, nobody.stderr.toString());
  const plain = join(tmp, 'w6-plain.pcap');
  writeFileSync(plain, nobody.stdout);
  const vlan = join(tmp, 'w6-vlan.pcap');
  run(['--data', 'tagged', '--vlan', '7:3'], vlan);
  const sized = join(tmp, 'w6-size.pcap');
  run(['--data', 'x', '--size', '300'], sized);
  const prof = join(tmp, 'w6-prof.pcap');
  run(['--data', 'profile', '--ttl', '5', '--dscp', 'EF', '--flow-label', '0x12345'], prof);
  const bad = join(tmp, 'w6-bad.pcap');
  run(['--data', 'corrupt', '--bad-udp-checksum'], bad);

  const F = ['_ws.expert', 'udp.checksum.status', 'ipv6.src', 'ipv6.dst', 'ipv6.hlim', 'ipv6.tclass', 'ipv6.flow', 'ipv6.plen', 'udp.length', 'vlan.id', 'vlan.priority', 'frame.len', 'udp.srcport'];
  // Traffic class and flow label as numbers: tshark versions print them in hex of different widths.
  const tshark6 = (file: string) => tshark(file, F).map((r) => r.map((v, i) => (i === 5 || i === 6 ? String(Number(v)) : v)));
  const p = tshark6(plain);
  assert.equal(p.length, 2);
  for (const r of p) assert.deepEqual(r, ['', '1', 'fd00::1', 'fd00::2', '64', '0', '0', '17', '17', '', '', '71', '6665']);
  assert.deepEqual(tshark6(vlan), [['', '1', 'fd00::1', 'fd00::2', '64', '0', '0', '14', '14', '7', '3', '72', '5000']]);
  assert.deepEqual(tshark6(sized), [['', '1', 'fd00::1', 'fd00::2', '64', '0', '0', '246', '246', '', '', '300', '5000']]);
  assert.deepEqual(tshark6(prof), [['', '1', 'fd00::1', 'fd00::2', '5', String(0xb8), String(0x12345), '15', '15', '', '', '69', '5000']]);
  const b = tshark6(bad);
  assert.equal(b.length, 1);
  assert.equal(b[0][1], '0', 'the named corruption: checksum status Bad');
  assert.match(b[0][0], /[Bb]ad checksum/);
  assert.equal(parsePcap(readFileSync(sized)).records[0].data.length, 300);
});

test('an unowned --from: while rawpoll runs, the peer kernel\'s NS for it is answered (ip -6 neigh shows our MAC) and datagrams come from it', async () => {
  const h = v6hosts();
  const src = `${h.net}77`;
  const cap = await capture(h.lab, h.b, h.ifB, 'icmp6');
  const rx = await udpReceiver(h.lab, h.b, 6666, 1, 8000, { family: 6 });
  // --dst-mac: no Solicitation of ours, so the peer can only learn our MAC from our answer to its own.
  const p = spawn('ip', ['netns', 'exec', h.a, process.execPath, RAWPOLL, 'netconsole', '-i', h.ifA, '--to', `${h.net}2`, '--from', `${src}/64`,
    '--dst-mac', h.macB, '--json'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => p.on('close', (c) => res(c)));
  try {
    assert.ok(await waitFor(() => out.includes('"ready"'), 8000), `no ready event: ${err}`);
    assert.equal(neigh(h.b, h.ifB, src), null, 'the peer knows nothing of the address yet');
    // The peer's kernel wants to send to it: it solicits, and rawpoll's NdpResponder answers.
    sh('ip', ['netns', 'exec', h.b, 'socat', '-u', 'STDIN', `UDP6-SENDTO:[${src}]:7`], 'x');
    assert.ok(await waitFor(() => neigh(h.b, h.ifB, src)?.mac === h.macA, 4000), `peer neighbour entry: ${JSON.stringify(neigh(h.b, h.ifB, src))}`);
    p.stdin.end('from an address the host does not have\n');
    assert.equal(await exited, 0, err);
  } finally {
    if (p.exitCode === null) p.kill('SIGKILL');
  }
  const got = await rx.done();
  assert.equal(got.length, 1);
  assert.deepEqual([got[0].from, got[0].port, got[0].data.toString()], [src, 6665, 'from an address the host does not have\n']);
  for (const line of out.trim().split('\n')) valid('netconsole', JSON.parse(line));
  // Our Advertisement as tshark reads it: solicited, override, target = the address, checksum good, no expert info.
  const rows = tshark(await cap.stop(), ['eth.src', 'icmpv6.type', 'icmpv6.nd.na.target_address', 'icmpv6.nd.na.flag.s', 'icmpv6.checksum.status', '_ws.expert']);
  const ours = rows.filter((r) => r[0] === h.macA && r[1] === '136');
  assert.ok(ours.length >= 1, JSON.stringify(rows));
  for (const r of ours) assert.deepEqual(r.slice(2), [src, '1', '1', '']);
  // The control: with rawpoll gone nobody answers for the address (the entry gets no MAC).
  must('ip', ['-n', h.b, '-6', 'neigh', 'flush', 'dev', h.ifB]);
  sh('ip', ['netns', 'exec', h.b, 'socat', '-u', 'STDIN', `UDP6-SENDTO:[${src}]:7`], 'x');
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(neigh(h.b, h.ifB, src), null);
});

test('send --gateway through an IPv6 router namespace (forwarding on): delivered, hop limit decremented to 63 on the far side', async () => {
  const lab = new Lab('r6');
  extraLabs.push(lab);
  const { a, m: r, b: c, ifA, ifMA: ifRa, ifMB: ifRc, ifB: ifC } = lab.chain(); // r: the router
  const p = `fd${(process.pid % 250).toString(16).padStart(2, '0')}:`;
  // Each end a global and a link-local address: the router's kernel solicits its next hop from a link-local source only
  // (ndisc_send_ns via ipv6_get_lladdr): without one it never asks for C, and forwards nothing.
  lab.addr6(a, ifA, `${p}a::1/64`, 'fe80::1/64');
  lab.addr6(r, ifRa, `${p}a::fe/64`, 'fe80::fe/64');
  lab.addr6(r, ifRc, `${p}c::fe/64`, 'fe80::fe/64');
  lab.addr6(c, ifC, `${p}c::2/64`, 'fe80::2/64');
  must('ip', ['netns', 'exec', r, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  const cap = await capture(lab, c, ifC, 'udp');
  const rx = await udpReceiver(lab, c, 9300, 1, 8000, { family: 6 });
  const s = rawpoll(a, ['send', '-i', ifA, '--to', `[${p}c::2]:9300`, '--gateway', `${p}a::fe`, '--data', 'routed', '--json']);
  assert.equal(s.code, 0, s.stderr);
  const j = JSON.parse(s.stdout);
  assert.deepEqual([j.via, j.dstMac], ['gateway', lab.mac(r, ifRa)]);
  const got = await rx.done();
  assert.deepEqual(got.map((d) => [d.from, d.data.toString()]), [[`${p}a::1`, 'routed']]);
  assert.deepEqual(tshark(await cap.stop(), ['ipv6.src', 'ipv6.hlim', 'udp.checksum.status', '_ws.expert']), [[`${p}a::1`, '63', '1', '']]);
  // A gateway of the other family is bad usage, named.
  const mixed = rawpoll(a, ['send', '-i', ifA, '--to', `[${p}c::2]:9300`, '--gateway', '10.0.0.254', '--data', 'x']);
  assert.equal(mixed.code, 2);
  assert.equal(mixed.stderr, `rawpoll: --to ${p}c::2 and --gateway 10.0.0.254 are different families: the gateway must be IPv6 too\n`);
});

test('send --bad-udp-checksum over IPv6: the peer kernel drops it and counts Udp6InCsumErrors exactly; a link-local target with -i', async () => {
  const h = v6hosts();
  const before = snmp6(h.b, 'Udp6InCsumErrors');
  const rx = await udpReceiver(h.lab, h.b, 9400, 1, 1500, { family: 6 });
  const r = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `[${h.net}2]:9400`, '--data', 'corrupt', '--bad-udp-checksum', '-c', '3']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await rx.done(), [], 'nothing may be delivered');
  assert.equal(snmp6(h.b, 'Udp6InCsumErrors') - before, 3);
  // Link-local: the interface is the zone; the source is A's link-local address, as netpoll_setup picks it.
  const rx2 = await udpReceiver(h.lab, h.b, 9400, 2, 6000, { family: 6 });
  const ll = rawpoll(h.a, ['send', '-i', h.ifA, '--to', '[fe80::2]:9400', '--data', 'fine']);
  assert.equal(ll.code, 0, ll.stderr);
  const z = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `[fe80::2%${h.ifA}]:9400`, '--data', 'zoned', '--json']);
  assert.equal(z.code, 0, z.stderr);
  assert.equal(JSON.parse(z.stdout).src, '[fe80::1]:6665');
  assert.deepEqual((await rx2.done()).map((d) => [d.from.replace(/%.*$/, ''), d.data.toString()]), [['fe80::1', 'fine'], ['fe80::1', 'zoned']]);
  assert.equal(snmp6(h.b, 'Udp6InCsumErrors') - before, 3, 'the good ones were not counted');
});

test('bad usage over IPv6 exits 2 with one line naming the value, and nothing reaches the wire (tcpdump on the peer)', async () => {
  const h = v6hosts();
  const cap = await capture(h.lab, h.b, h.ifB, `ether src ${h.macA}`);
  const to = ['send', '-i', h.ifA, '--to', `[${h.net}2]:9000`, '--data', 'x'];
  const cases: Array<[string[], RegExp]> = [
    [[...to, '--df'], /^--df is IPv4 only: IPv6 has no Don't Fragment bit/],
    [[...to, '--ip-id', '7'], /^--ip-id is IPv4 only: the IPv6 header has no identification field/],
    [[...to, '--bad-ip-checksum'], /^--bad-ip-checksum is IPv4 only: the IPv6 header has no checksum/],
    [[...to, '--no-udp-checksum'], /^--no-udp-checksum is refused over IPv6: the UDP checksum is mandatory there \(RFC 8200 §8\.1/],
    [[...to, '--from', '10.0.0.1'], new RegExp(`^--to ${h.net}2 and --from 10\\.0\\.0\\.1 are different families`)],
    [[...to, '--flow-label', '0x100000'], /^bad --flow-label '0x100000': expected an integer 0-1048575 or 0x00000-0xfffff/],
    [['send', '-i', h.ifA, '--to', `${h.ipB}:9000`, '--data', 'x', '--flow-label', '5'], /^--flow-label 5 is IPv6 only/],
    [['send', '-i', h.ifA, '--to', '[fe80::2%other0]:9000', '--data', 'x'], new RegExp(`^--to fe80::2%other0 names zone other0, but -i is ${h.ifA}`)],
    [['send', '--to', '[fe80::2]:9000', '--data', 'x'], /^--to fe80::2 is link-local \(fe80::\/10\): it is only reachable through one interface; name it with -i IF/],
    [['send', '-i', h.ifA, '--to', `[${h.net}2:9000`, '--data', 'x'], /^bad --to '\[.*': '\[' without '\]'/],
    [['netconsole', '--config', `@${h.net}1/${h.ifA},@10.0.0.2/`], /different families; both IPv4 or both IPv6/],
    [['netconsole', '--config', `@/02:00:00:00:99:99,@${h.net}2/`], /^no interface here has MAC 02:00:00:00:99:99 \(from --config\)/],
    [['netconsole', '--config', `@/${h.ifA},@${h.net}zz/`], /target IP must be an IPv4 address like 10\.0\.0\.9 or an IPv6 one like fd00::9/],
    [['netdump', '-i', h.ifA, '--server', `${h.net}2`, '--file', '/etc/hostname'], new RegExp(`^netdump is IPv4-only, as FreeBSD's debugnet is: --server ${h.net}2 is IPv6`)],
  ];
  for (const [args, re] of cases) {
    const r = rawpoll(h.a, args, '');
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
    assert.match(r.stderr.replace(/^rawpoll: /, ''), re);
  }
  assert.equal(parsePcap(readFileSync(await cap.stop())).records.length, 0, 'no frame of ours reached the peer');
});

test('netconsole over IPv6 (--to bare address, --config in the kernel\'s IPv6 syntax with dev given as a MAC) and oops over IPv6 into kernel UDPv6 sockets', async () => {
  const h = v6hosts();
  const rx = await udpReceiver(h.lab, h.b, 6666, 2, 8000, { family: 6 });
  const a = rawpoll(h.a, ['netconsole', '-i', h.ifA, '--to', `${h.net}2`], 'basic over IPv6\n');
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, new RegExp(`to \\[${h.net}2\\]:6666 `));
  // netconsole=+6665@<src>/<dev MAC>,6666@<tgt>/ as the kernel takes it: bare IPv6 addresses, the device by its MAC.
  const b = rawpoll(h.a, ['netconsole', '--config', `+6665@${h.net}1/${h.macA},6666@${h.net}2/`], 'extended over IPv6\n');
  assert.equal(b.code, 0, b.stderr);
  const got = await rx.done();
  assert.equal(got.length, 2);
  assert.deepEqual([got[0].from, got[0].port, got[0].data.toString()], [`${h.net}1`, 6665, 'basic over IPv6\n']);
  assert.deepEqual([got[1].from, got[1].port], [`${h.net}1`, 6665]);
  assert.match(got[1].data.toString(), /^14,0,\d+,-;extended over IPv6\n$/);

  const log = join(tmp, 'oops6.log');
  writeFileSync(log, 'BUG: rawpoll over IPv6\n');
  const orx = await udpReceiver(h.lab, h.b, 2004, 1, 8000, { family: 6 });
  const o = rawpoll(h.a, ['oops', '-i', h.ifA, '--to', `${h.net}2`, '--log', log, '--retransmit', '1', '--json']);
  assert.equal(o.code, 0, o.stderr);
  const j = JSON.parse(o.stdout) as Record<string, unknown> & { datagramBytes: number };
  valid('oops', j);
  assert.deepEqual([j.src, j.dst, j.dstMac, j.datagrams], [`[${h.net}1]:2004`, `[${h.net}2]:2004`, h.macB, 1]);
  const [d] = await orx.done();
  assert.deepEqual([d.from, d.port, d.data.length], [`${h.net}1`, 2004, j.datagramBytes]);
  assert.equal(d.data.readUInt16LE(0), 3, 'netoops v3 header');
  const off = d.data.readUInt16LE(4); // data_offset, as a receiver must read it
  assert.equal(d.data.subarray(off, off + 23).toString(), 'BUG: rawpoll over IPv6\n');
});
