/**
 * `rawpoll collect` is dual-stack by default, as netconsd is: one socket a port takes netconsole records from IPv6 and
 * IPv4 senders, each host named by its address (RFC 5952 text for IPv6) with a log file of its own. `--bind IPv6`
 * listens on that address only. The senders are the peer kernel's own UDP sockets (IPv6 and IPv4) and rawpoll
 * netconsole over IPv6, in namespaces created here and always removed; tshark decodes the IPv6 capture with
 * contrib/wireshark/rawpoll.lua.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nsRun, rawpoll, ROOT, sh, startTcpdump, twoHosts, waitFor, type TwoHostLab } from '../helpers/lab.js';
import { startCollector } from '../helpers/collector.js';

const labs: TwoHostLab[] = [];
const dirs: string[] = [];
after(() => {
  for (const h of labs) h.lab.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Sends each line as one extended netconsole record (seq 0, 1, …) from the peer kernel's socket of `family`. */
function sendRecords(ns: string, family: 4 | 6, to: string, port: number, tag: string, n: number): void {
  const py = `import socket, sys
s = socket.socket(socket.AF_INET6 if ${family} == 6 else socket.AF_INET, socket.SOCK_DGRAM)
for i in range(${n}):
    s.sendto(("6,%d,%d,-;${tag} %d\\n" % (i, 1000 + i, i)).encode(), ("${to}", ${port}))
`;
  const r = nsRun(ns, ['python3', '-c', py]);
  assert.equal(r.code, 0, r.stderr);
}

function v6Lab(): TwoHostLab & { a6: string; b6: string } {
  const h = twoHosts();
  labs.push(h);
  h.lab.addr6(h.a, h.ifA, 'fd00:c011::1/64');
  h.lab.addr6(h.b, h.ifB, 'fd00:c011::2/64');
  return { ...h, a6: 'fd00:c011::1', b6: 'fd00:c011::2' };
}

function logLines(file: string, tag: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l.includes(`${tag} `)) : [];
}

test('collect: one default socket takes netconsole over IPv6 and IPv4; each host by its address, a log each', async () => {
  const h = v6Lab();
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-c6-'));
  dirs.push(dir);
  const c = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666']);
  assert.equal(c.events[0].host, '::', 'the listening line names the dual-stack socket');
  sendRecords(h.a, 6, h.b6, 6666, 'six', 50);
  sendRecords(h.a, 4, h.ipB, 6666, 'four', 50);
  const log6 = join(dir, 'netconsole', `${h.a6}.log`);
  const log4 = join(dir, 'netconsole', `${h.ipA}.log`);
  assert.ok(await waitFor(() => logLines(log6, 'six').length === 50 && logLines(log4, 'four').length === 50, 10000),
    `50 records each: ${logLines(log6, 'six').length} IPv6, ${logLines(log4, 'four').length} IPv4; ${c.stderr()}`);
  // The event lines go through a pipe, the logs are written at once: wait for both announcements.
  assert.ok(await waitFor(() => c.events.filter((e) => e.event === 'new-host').length === 2, 5000), JSON.stringify(c.events));
  const hosts = c.events.filter((e) => e.event === 'new-host').map((e) => e.host).sort();
  assert.deepEqual(hosts, [h.a6, h.ipA].sort());
  assert.equal(logLines(log6, 'four').length + logLines(log4, 'six').length, 0, 'each host in its own file');
  assert.deepEqual(logLines(log6, 'six').map((l) => Number(/ (\d+)$/.exec(l)![1])), Array.from({ length: 50 }, (_, i) => i));
  assert.equal(c.events.filter((e) => e.event === 'seq-gap').length, 0);
  assert.equal(await c.stop(), 0, c.stderr());
});

test('collect --bind IPv6: that address only (records to another local address are not taken); bad --bind is exit 2', async () => {
  const h = v6Lab();
  h.lab.addr6(h.b, h.ifB, 'fd00:c011::3/64');
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-c6b-'));
  dirs.push(dir);
  // Written unnormalised: the listening line gives RFC 5952 text.
  const c = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666', '--bind', 'FD00:C011:0:0::2']);
  assert.equal(c.events[0].host, h.b6);
  sendRecords(h.a, 6, 'fd00:c011::3', 6666, 'other', 5);
  sendRecords(h.a, 6, h.b6, 6666, 'mine', 5);
  const log6 = join(dir, 'netconsole', `${h.a6}.log`);
  assert.ok(await waitFor(() => logLines(log6, 'mine').length === 5, 10000), c.stderr());
  assert.equal(logLines(log6, 'other').length, 0, 'not bound to fd00:c011::3');
  assert.equal(await c.stop(), 0, c.stderr());
  const bad = nsRun(h.b, [process.execPath, join(process.cwd(), 'bin', 'rawpoll.js'), 'collect', '--dir', dir, '--netconsole', '--bind', 'fd00::zz']);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /^rawpoll: bad --bind 'fd00::zz': expected an IPv6 address like fd00::2/);
});

test('rawpoll netconsole --extended over IPv6 into collect: a fragmented record reassembled; the capture decodes with rawpoll.lua', async () => {
  const h = v6Lab();
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-c6n-'));
  dirs.push(dir);
  const c = await startCollector(h.lab, h.b, dir, ['--netconsole', '6666']);
  const pcap = join(dir, 'nc6.pcap');
  const td = await startTcpdump(h.lab, h.b, h.ifB, pcap, 'ip6 and udp port 6666');
  const long = 'L'.repeat(2500);
  const r = rawpoll(h.a, ['netconsole', '-i', h.ifA, '--to', `[${h.b6}]:6666`, '--extended', '--json'], `short line\n${long}\n`);
  assert.equal(r.code, 0, r.stderr);
  const log6 = join(dir, 'netconsole', `${h.a6}.log`);
  assert.ok(await waitFor(() => existsSync(log6) && readFileSync(log6, 'utf8').includes(long), 10000), c.stderr());
  assert.ok(await c.wait((e) => e.event === 'reassembled' && e.host === h.a6), JSON.stringify(c.events));
  assert.match(readFileSync(log6, 'utf8'), /^\d+,0,\d+,-;short line\n\d+,1,\d+,-;L{2500}\n$/);
  await td.stop(300);
  assert.equal(await c.stop(), 0, c.stderr());
  // Wireshark (tshark with contrib/wireshark/rawpoll.lua) on the IPv6 capture: every datagram decoded, no expert info.
  const t = sh('tshark', ['-n', '-r', pcap, '-X', `lua_script:${join(ROOT, 'contrib', 'wireshark', 'rawpoll.lua')}`, '-T', 'fields',
    '-e', 'ipv6.src', '-e', 'netconsole.seq', '-e', 'netconsole.frag.offset', '-e', '_ws.expert']);
  assert.equal(t.status, 0, t.stderr.toString());
  const rows = t.stdout.toString().replace(/\n+$/, '').split('\n').map((l) => l.split('\t'));
  assert.ok(rows.length >= 4, `1 + at least 3 ncfrag pieces: ${t.stdout}`);
  assert.ok(rows.every((f) => f[0] === h.a6 && /^\d+$/.test(f[1]) && (f[3] ?? '') === ''), t.stdout.toString());
  assert.deepEqual(rows.filter((f) => f[2] !== '').map((f) => f[1]), rows.slice(1).map(() => '1'), 'the pieces of record 1');
});

test('rawpoll oops over IPv6 (rawpoll\'s extension of netoops) into collect --oops: a complete report from an IPv6 host; rawpoll.lua decodes it', async () => {
  const h = v6Lab();
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-c6o-'));
  dirs.push(dir);
  const c = await startCollector(h.lab, h.b, dir, ['--oops', '2004']);
  const pcap = join(dir, 'oops6.pcap');
  const td = await startTcpdump(h.lab, h.b, h.ifB, pcap, 'ip6 and udp port 2004');
  const log = join(dir, 'dmesg.txt');
  const text = Array.from({ length: 40 }, (_, i) => `<4>[  ${i}.000000] oops over IPv6, line ${i}`).join('\n') + '\n';
  writeFileSync(log, text);
  const r = rawpoll(h.a, ['oops', '-i', h.ifA, '--to', h.b6, '--log', log, '--type', 'oops', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const sent = JSON.parse(r.stdout) as { datagrams: number; dst: string };
  assert.equal(sent.dst, `[${h.b6}]:2004`);
  const done = await c.wait((e) => e.event === 'dump-complete', 10000);
  assert.ok(done, `no dump-complete: ${JSON.stringify(c.events)} ${c.stderr()}`);
  assert.equal(done.host, h.a6);
  assert.equal(readFileSync(String(done.file), 'utf8'), text, 'the report is the log, byte for byte');
  await td.stop(300);
  assert.equal(await c.stop(), 0, c.stderr());
  const t = sh('tshark', ['-n', '-r', pcap, '-X', `lua_script:${join(ROOT, 'contrib', 'wireshark', 'rawpoll.lua')}`, '-T', 'fields',
    '-e', 'ipv6.src', '-e', 'netoops.version', '-e', 'netoops.packet_count', '-e', '_ws.expert']);
  assert.equal(t.status, 0, t.stderr.toString());
  const rows = t.stdout.toString().replace(/\n+$/, '').split('\n').map((l) => l.split('\t'));
  assert.equal(rows.length, sent.datagrams, t.stdout.toString());
  assert.ok(rows.every((f) => f[0] === h.a6 && f[1] === '3' && Number(f[2]) > 0 && (f[3] ?? '') === ''), t.stdout.toString());
});
