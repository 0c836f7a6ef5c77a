import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Lab, must, rawpoll, ROOT, rxPackets, sh, snmp, twoHosts, udpReceiver, waitFor, type TwoHostLab } from '../helpers/lab.js';
const HOLD = join(ROOT, 'dist', 'test', 'helpers', 'hold-sender.js');
import { parsePcap } from '../../src/wire/pcapfile.js';
import { nativeAvailable } from '../../src/link/native.js';

const labs: Lab[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'rawpoll-send-'));
after(() => {
  for (const l of labs) l.destroy();
  rmSync(tmp, { recursive: true, force: true });
});
function hosts(o: Parameters<typeof twoHosts>[0] = {}): TwoHostLab {
  const h = twoHosts(o);
  labs.push(h.lab);
  return h;
}

test('arp: resolves the veth peer MAC from the kernel ARP reply', () => {
  const h = hosts();
  const r = rawpoll(h.a, ['arp', '-i', h.ifA, h.ipB, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.mac, h.macB);
  assert.equal(j.ip, h.ipB);
  assert.equal(j.via, 'direct');
  assert.ok(j.ms > 0);
  const human = rawpoll(h.a, ['arp', '-i', h.ifA, h.ipB]);
  assert.match(human.stdout, new RegExp(`${h.ipB} is-at ${h.macB} on ${h.ifA}`));
});

test('arp: nobody answers -> exit 1 with "no ARP reply from X on IF after N tries"', () => {
  const h = hosts();
  const dead = h.ipB.replace(/\.2$/, '.77');
  const r = rawpoll(h.a, ['arp', '-i', h.ifA, dead, '--retries', '2', '--timeout', '150']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr.trim(), `rawpoll: no ARP reply from ${dead} on ${h.ifA} after 2 tries`);
});

test('send: payloads arrive byte-exact at a kernel UDP socket (peer kernel accepted IP and UDP checksums)', async () => {
  const h = hosts();
  const payloads = [Buffer.from('hello'), randomBytes(1), randomBytes(1000), randomBytes(1472)];
  const rx = await udpReceiver(h.lab, h.b, 9000, payloads.length, 8000);
  for (const p of payloads) {
    const file = join(tmp, `p${p.length}.bin`);
    writeFileSync(file, p);
    const r = rawpoll(h.a, ['send', '-i', h.ifA, '--from', `${h.ipA}:5000`, '--to', `${h.ipB}:9000`, '--file', file]);
    assert.equal(r.code, 0, r.stderr);
  }
  const got = await rx.done();
  assert.equal(got.length, payloads.length);
  got.forEach((d, i) => {
    assert.deepEqual(d.data, payloads[i]);
    assert.equal(d.from, h.ipA);
    assert.equal(d.port, 5000);
  });
});

test('send: -c 100 with stdin payload, socat receives every datagram; --json reports the run', async () => {
  const h = hosts();
  const out = join(tmp, 'socat.out');
  const socat = h.lab.spawn(h.b, ['socat', '-u', 'UDP-RECV:9100', `OPEN:${out},creat,trunc`]);
  await new Promise((r) => setTimeout(r, 300));
  const r = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9100`, '-c', '100', '--json'], 'line\n');
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.sent, 100);
  assert.equal(j.dstMac, h.macB);
  assert.equal(j.bytes, 100 * 60);
  assert.equal(j.src, `${h.ipA}:6665`);
  assert.ok(j.arpMs > 0);
  await new Promise((res) => setTimeout(res, 300));
  socat.kill();
  assert.equal(readFileSync(out, 'utf8'), 'line\n'.repeat(100));
});

test('send: from an interface with no IPv4 address, --from gives the source and rawpoll answers ARP for it', async () => {
  const h = hosts({ noAddrA: true });
  assert.equal(must('ip', ['-n', h.a, '-4', 'addr', 'show', 'dev', h.ifA]).trim(), '');
  const src = h.ipA.replace(/\.1$/, '.77');
  const rx = await udpReceiver(h.lab, h.b, 9200, 1, 8000);
  const r = rawpoll(h.a, ['send', '-i', h.ifA, '--from', `${src}:4444`, '--to', `${h.ipB}:9200`, '--data', 'no address here']);
  assert.equal(r.code, 0, r.stderr);
  if (nativeAvailable()) assert.equal(r.stderr, '', "libpcap's no-address warning is muted (it is expected here)");
  const got = await rx.done();
  assert.equal(got.length, 1);
  assert.equal(got[0].data.toString(), 'no address here');
  assert.equal(got[0].from, src);
  // While rawpoll runs it answers who-has for --from (the host does not own it): the peer kernel's own ARP for it
  // (triggered by a ping) must end with our MAC in the peer's neighbour table. Before: nobody answers.
  sh('ip', ['-n', h.b, 'neigh', 'flush', 'all']);
  sh('ip', ['netns', 'exec', h.b, 'ping', '-c', '1', '-W', '1', src]);
  assert.doesNotMatch(must('ip', ['-n', h.b, 'neigh', 'show', src]), /lladdr/, 'without rawpoll running nobody answers for the address');
  const holder = h.lab.spawn(h.a, [process.execPath, HOLD, h.ifA, src, h.ipB, h.macB, '4000']);
  let out = '';
  holder.stdout!.on('data', (d) => (out += d));
  assert.ok(await waitFor(() => out.includes('ready'), 5000), 'holder started');
  sh('ip', ['-n', h.b, 'neigh', 'flush', 'all']);
  sh('ip', ['netns', 'exec', h.b, 'ping', '-c', '1', '-W', '1', src]);
  assert.match(must('ip', ['-n', h.b, 'neigh', 'show', src]), new RegExp(`lladdr ${h.macA}`));
  holder.kill();
});

test('send: --gateway delivers across a router namespace (ip_forward=1)', async () => {
  const lab = new Lab();
  labs.push(lab);
  const a = lab.ns('a');
  const r = lab.ns('r');
  const b = lab.ns('b');
  const n = 100 + (process.pid % 100);
  const ifA = `${lab.tag}A`.slice(-15), ifR1 = `${lab.tag}R`.slice(-15), ifR2 = `${lab.tag}S`.slice(-15), ifB = `${lab.tag}B`.slice(-15);
  lab.veth(a, ifA, r, ifR1);
  lab.veth(r, ifR2, b, ifB);
  lab.addr(a, ifA, `10.${n}.201.1/24`);
  lab.addr(r, ifR1, `10.${n}.201.254/24`);
  lab.addr(r, ifR2, `10.${n}.202.254/24`);
  lab.addr(b, ifB, `10.${n}.202.2/24`);
  must('ip', ['-n', b, 'route', 'add', 'default', 'via', `10.${n}.202.254`]);
  must('ip', ['netns', 'exec', r, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  const arp = rawpoll(a, ['arp', '-i', ifA, `10.${n}.202.2`, '--gateway', `10.${n}.201.254`, '--json']);
  assert.equal(arp.code, 0, arp.stderr);
  assert.deepEqual([JSON.parse(arp.stdout).via, JSON.parse(arp.stdout).nextHop], ['gateway', `10.${n}.201.254`]);
  assert.equal(JSON.parse(arp.stdout).mac, lab.mac(r, ifR1));
  const rx = await udpReceiver(lab, b, 9300, 1, 8000);
  const s = rawpoll(a, ['send', '-i', ifA, '--to', `10.${n}.202.2:9300`, '--gateway', `10.${n}.201.254`, '--data', 'routed']);
  assert.equal(s.code, 0, s.stderr);
  const got = await rx.done();
  assert.equal(got.length, 1);
  assert.equal(got[0].data.toString(), 'routed');
  assert.equal(got[0].from, `10.${n}.201.1`);
});

test('send -w: no NIC, no root; tshark reads the file with no malformed or checksum warnings', () => {
  const file = join(tmp, 'out.pcap');
  const r = sh('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, join(ROOT, 'bin', 'rawpoll.js'),
    'send', '--to', '10.0.0.2:9000', '--data', 'x', '--dst-mac', '02:00:00:00:00:02', '--src-mac', '02:00:00:00:00:01', '--from', '10.0.0.1', '-w', file, '-c', '5', '--vlan', '7:3']);
  // setpriv's nobody may not write into tmp: fall back to root without an interface if so.
  if (r.status !== 0) {
    const r2 = rawpollLocal(['send', '--to', '10.0.0.2:9000', '--data', 'x', '--dst-mac', '02:00:00:00:00:02', '--src-mac', '02:00:00:00:00:01', '--from', '10.0.0.1', '-w', file, '-c', '5', '--vlan', '7:3']);
    assert.equal(r2.status, 0, r2.stderr.toString());
  }
  const p = parsePcap(readFileSync(file));
  assert.equal(p.records.length, 5);
  const expert = must('tshark', ['-r', file, '-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-T', 'fields', '-e', '_ws.expert', '-e', 'ip.checksum.status', '-e', 'udp.checksum.status', '-e', 'vlan.id', '-e', 'ip.id']);
  const rows = expert.split('\n').filter((l) => l.length > 0).map((l) => l.split('\t'));
  assert.equal(rows.length, 5);
  rows.forEach((row, i) => {
    assert.equal(row[0], '', `frame ${i + 1} has expert info: ${row[0]}`);
    assert.equal(row[1], '1', 'IP checksum status Good');
    assert.equal(row[2], '1', 'UDP checksum status Good');
    assert.equal(row[3], '7');
    assert.equal(Number(row[4]), i + 1, 'IP ID counts from 1 like netpoll');
  });
  assert.deepEqual(readdirSync(tmp).filter((f) => f.includes('.tmp-')), [], 'no temporary file left behind');
});

function rawpollLocal(args: string[]) {
  return sh(process.execPath, [join(ROOT, 'bin', 'rawpoll.js'), ...args]);
}

test('send --bad-udp-checksum: the peer kernel drops the datagram and counts UDP InCsumErrors', async () => {
  const h = hosts();
  const before = snmp(h.b, 'Udp', 'InCsumErrors');
  const rx = await udpReceiver(h.lab, h.b, 9400, 1, 1500);
  const r = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9400`, '--data', 'corrupt', '--bad-udp-checksum', '-c', '3']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await rx.done(), [], 'nothing may be delivered');
  assert.equal(snmp(h.b, 'Udp', 'InCsumErrors') - before, 3);
  // The control: the same datagram with a good checksum is delivered.
  const rx2 = await udpReceiver(h.lab, h.b, 9400, 1, 5000);
  assert.equal(rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9400`, '--data', 'fine']).code, 0);
  assert.equal((await rx2.done())[0]?.data.toString(), 'fine');
});

test('send --bad-ip-checksum: the peer kernel drops it (Ip InHdrErrors); --no-udp-checksum is accepted', async () => {
  const h = hosts();
  const before = snmp(h.b, 'Ip', 'InHdrErrors');
  const rx = await udpReceiver(h.lab, h.b, 9500, 1, 4000);
  assert.equal(rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9500`, '--data', 'bad ip', '--bad-ip-checksum']).code, 0);
  assert.equal(rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9500`, '--data', 'no csum', '--no-udp-checksum']).code, 0);
  const got = await rx.done();
  assert.equal(snmp(h.b, 'Ip', 'InHdrErrors') - before, 1);
  assert.equal(got.length, 1);
  assert.equal(got[0].data.toString(), 'no csum');
});

test('bad input: exit 2 or 1, one clear line, no stack trace, nothing on the wire', () => {
  const h = hosts();
  const rx0 = rxPackets(h.b, h.ifB);
  const cases: Array<[string[], number, RegExp]> = [
    [['send', '-i', 'nosuch0', '--to', `${h.ipB}:9`, '--data', 'x'], 2, /no interface 'nosuch0'/],
    [['send', '-i', h.ifA, '--to', '10.0.0.999:9', '--data', 'x'], 2, /bad --to '10.0.0.999'/],
    [['send', '-i', h.ifA, '--to', `${h.ipB}:65536`, '--data', 'x'], 2, /bad --to port '65536'.*0-65535/],
    [['send', '-i', h.ifA, '--to', `${h.ipB}`, '--data', 'x'], 2, /expected IP:PORT/],
    [['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x', '--dst-mac', '02:00:00:00:00'], 2, /bad --dst-mac '02:00:00:00:00'/],
    [['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x'.repeat(1473)], 2, /payload of 1473 bytes does not fit the MTU of 1500 \(at most 1472/],
    [['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x', '--ttl', '300'], 2, /bad --ttl '300'/],
    [['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x', '--vlan', 'abc'], 2, /bad --vlan 'abc'/],
    [['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x', '--size', '59'], 2, /bad frame size '59'/],
    [['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--bogus'], 2, /unknown option '--bogus'/],
    [['arp', '-i', h.ifA, 'not-an-ip'], 2, /bad target IP 'not-an-ip'/],
  ];
  for (const [args, code, re] of cases) {
    const r = rawpoll(h.a, args);
    assert.equal(r.code, code, `${args.join(' ')} -> ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  // No permission: an unprivileged user without CAP_NET_RAW.
  const np = sh('ip', ['netns', 'exec', h.a, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all',
    process.execPath, join(ROOT, 'bin', 'rawpoll.js'), 'send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x']);
  assert.equal(np.status, 1, np.stderr.toString());
  assert.match(np.stderr.toString(), /^rawpoll: no permission to open .* run as root/m);
  assert.doesNotMatch(np.stderr.toString(), /\n\s+at /);
  assert.equal(rxPackets(h.b, h.ifB), rx0, 'no frame reached the peer');
});
