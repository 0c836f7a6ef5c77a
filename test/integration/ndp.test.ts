/**
 * rawpoll ndp against real kernels: two namespaces joined by a veth pair (test/helpers/lab.ts, always removed), IPv6
 * turned back on for the pair only (the lab turns it off everywhere), addresses added `nodad` and no autoconfigured
 * link-local (addr_gen_mode 1), so nothing waits for DAD and the link carries only what the test sends. Oracles: the
 * peer kernel's own Neighbor Advertisement (its MAC), the peer kernel's neighbour table (`ip -6 neigh`) for what our
 * answerer told it, and tshark's ICMPv6 dissector for the frames rawpoll put on the wire.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { valid } from '../helpers/schemas.js';
import { exitOf, labsForThisFile, must, nsRun, rawpoll, RAWPOLL, sh, startTcpdump, waitFor, withIpv6, type V6Lab } from '../helpers/lab.js';

const { tmp, hosts } = labsForThisFile('rawpoll-ndp-');

/** A two-host lab with IPv6 on its veth pair: global and link-local addresses on both ends, no DAD, no autoconf. */
const v6hosts = (): V6Lab => withIpv6(hosts());

/** The peer kernel's neighbour entry for ADDR on DEV: its MAC and state, or null. */
function neigh(ns: string, dev: string, addr: string): { mac: string; state: string } | null {
  const m = /lladdr (\S+) .*?([A-Z]+)\s*$/.exec(must('ip', ['-n', ns, '-6', 'neigh', 'show', addr, 'dev', dev]).trim());
  return m ? { mac: m[1], state: m[2] } : null;
}

test('ndp: resolves the peer kernel\'s MAC (a global and a link-local target), --json as its schema says', () => {
  const h = v6hosts();
  const r = rawpoll(h.a, ['ndp', '-i', h.ifA, `${h.net}2`, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as Record<string, unknown> & { ms: number };
  valid('ndp', j);
  assert.deepEqual({ ...j, ms: 0 }, { ip: `${h.net}2`, mac: h.macB, iface: h.ifA, via: 'direct', nextHop: `${h.net}2`, ms: 0, tries: 1, router: false });
  assert.ok(j.ms > 0);
  // Our Solicitation carried our MAC (source link-layer option): the peer kernel learnt it from that alone.
  assert.equal(neigh(h.b, h.ifB, `${h.net}1`)?.mac, h.macA);
  const human = rawpoll(h.a, ['ndp', '-i', h.ifA, `fe80::2%${h.ifA}`]);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, new RegExp(`^fe80::2 is-at ${h.macB} on ${h.ifA} \\([\\d.]+ ms, 1 try\\)\\n$`));
  assert.equal(neigh(h.b, h.ifB, 'fe80::1')?.mac, h.macA, 'a link-local target is asked from the link-local source');
  // An address the host does not own, as --from: asked as it (said so), and the peer learns it too.
  const as = rawpoll(h.a, ['ndp', '-i', h.ifA, `${h.net}2`, '--from', `${h.net}77/64`]);
  assert.equal(as.code, 0, as.stderr);
  assert.match(as.stdout, new RegExp(` asked as ${h.net}77\\n$`));
  assert.equal(neigh(h.b, h.ifB, `${h.net}77`)?.mac, h.macA);
  // Off-link (another prefix than the source's /64): the gateway is asked instead, as arp --gateway.
  const gw = rawpoll(h.a, ['ndp', '-i', h.ifA, 'fd99::9', '--gateway', 'fe80::2', '--json']);
  assert.equal(gw.code, 0, gw.stderr);
  assert.deepEqual({ ...JSON.parse(gw.stdout), ms: 0 }, { ip: 'fd99::9', mac: h.macB, iface: h.ifA, via: 'gateway', nextHop: 'fe80::2', ms: 0, tries: 1, router: false });
});

test('ndp: nobody answers -> exit 1 with "no NDP reply from X on IF after N tries"; bad usage is exit 2 before anything is sent', () => {
  const h = v6hosts();
  const dead = `${h.net}77`;
  const t0 = Date.now();
  const r = rawpoll(h.a, ['ndp', '-i', h.ifA, dead, '--retries', '2', '--timeout', '150']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `rawpoll: no NDP reply from ${dead} on ${h.ifA} after 2 tries\n`);
  assert.equal(r.stdout, '');
  assert.ok(Date.now() - t0 >= 300, 'two tries of 150 ms');
  for (const [args, re] of [
    [[dead.replace('::', ':::')], /^rawpoll: bad target IP '.*:::77': expected an IPv6 address like fd00::2/],
    [['ff02::1'], /^rawpoll: bad target IP 'ff02::1': a multicast address has no neighbour/],
    [['fe80::2%eth9'], new RegExp(`^rawpoll: bad target IP 'fe80::2%eth9': its zone %eth9 is not the interface -i ${h.ifA}`)],
    [[dead, '--retries', '0'], /^rawpoll: bad --retries '0': expected an integer 1-100/],
    [[], /^rawpoll: missing ADDR: the IPv6 address to resolve/],
    [['--answer', `${h.net}1`], /^rawpoll: --answer .*::1: this host owns that address/],
  ] as [string[], RegExp][]) {
    const u = rawpoll(h.a, ['ndp', '-i', h.ifA, ...args]);
    assert.equal(u.code, 2, `${args.join(' ')}: ${u.stderr}`);
    assert.match(u.stderr, re);
  }
});

test('ndp --answer: the peer kernel\'s Solicitation for an address the host does not own is answered (its neighbour table has our MAC); tshark decodes our NS and NA with no expert info, checksums good', async () => {
  const h = v6hosts();
  const pcap = join(tmp, 'ndp.pcap');
  const td = await startTcpdump(h.lab, h.b, h.ifB, pcap, 'icmp6');

  // Our Solicitation (resolve), captured at the peer.
  assert.equal(rawpoll(h.a, ['ndp', '-i', h.ifA, `${h.net}2`]).code, 0);

  // Our answerer for ::99, which A's kernel does not have; the peer kernel pings it, so it solicits it first.
  const spoke = `${h.net}99`;
  const p = h.lab.spawn(h.a, [process.execPath, RAWPOLL, 'ndp', '-i', h.ifA, '--answer', spoke, '--duration', '2', '--json']);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  // It says so once its capture is open: a ping before that would only be retried by the kernel, 1 s later.
  assert.ok(await waitFor(() => /answering/.test(err), 5000), `the answerer did not start: ${err}`);
  nsRun(h.b, ['ping', '-6', '-c', '1', '-W', '1', spoke]); // no echo reply: A's kernel does not own ::99
  const n = neigh(h.b, h.ifB, spoke);
  assert.equal(n?.mac, h.macA, `peer's entry for ${spoke}: ${JSON.stringify(n)}`);
  assert.match(n!.state, /^(REACHABLE|STALE|DELAY|PROBE)$/);
  const { code } = await exitOf(p, 10000);
  assert.equal(code, 0, err);
  assert.equal(err, `rawpoll ndp: answering Neighbor Solicitations for ${spoke} on ${h.ifA} as ${h.macA}\n`);
  const r = { stdout: out };
  const j = JSON.parse(r.stdout) as { answer: string; answered: number; unanswered: number };
  valid('ndp', j);
  assert.equal(j.answer, spoke);
  assert.ok(j.answered >= 1, r.stdout);
  assert.equal(j.unanswered, 0);

  await td.stop(200);
  const t = sh('tshark', ['-r', pcap, '-T', 'json', '-Y', `eth.src == ${h.macA} && (icmpv6.type == 135 || icmpv6.type == 136)`]);
  assert.equal(t.status, 0, t.stderr.toString());
  const frames = (JSON.parse(t.stdout.toString()) as { _source: { layers: Record<string, Record<string, unknown>> } }[]).map((f) => f._source.layers);
  const flat = (o: unknown, acc: Record<string, unknown> = {}): Record<string, unknown> => {
    for (const [k, v] of Object.entries(o as Record<string, unknown>)) {
      if (v && typeof v === 'object' && !Array.isArray(v)) flat(v, acc);
      acc[k] = v;
    }
    return acc;
  };
  const ours = frames.map((l) => ({ l, f: flat(l) }));
  const ns = ours.find(({ f }) => f['icmpv6.type'] === '135' && f['icmpv6.nd.ns.target_address'] === `${h.net}2`);
  const na = ours.find(({ f }) => f['icmpv6.type'] === '136' && f['icmpv6.nd.na.target_address'] === spoke);
  assert.ok(ns, 'our NS was captured');
  assert.ok(na, 'our NA was captured');
  for (const { l, f } of ours) {
    assert.equal(JSON.stringify(l).includes('_ws.expert'), false, `expert info in ${JSON.stringify(l).slice(0, 1500)}`);
    assert.equal(f['icmpv6.checksum.status'], '1', 'checksum good');
    assert.equal(f['ipv6.hlim'], '255');
  }
  assert.equal(ns!.f['eth.dst'], `33:33:ff:00:00:02`);
  assert.equal(ns!.f['ipv6.dst'], 'ff02::1:ff00:2');
  assert.equal(ns!.f['icmpv6.opt.src_linkaddr'], h.macA);
  assert.equal(na!.f['eth.dst'], h.macB);
  assert.equal(na!.f['ipv6.src'], spoke);
  assert.deepEqual([na!.f['icmpv6.nd.na.flag.r'], na!.f['icmpv6.nd.na.flag.s'], na!.f['icmpv6.nd.na.flag.o']], ['0', '1', '1']);
  assert.equal(na!.f['icmpv6.opt.target_linkaddr'], h.macA);
});

test('ndp --answer defends the address against the peer kernel\'s duplicate address detection (its address goes dadfailed); SIGINT ends it with exit 0', async () => {
  const h = v6hosts();
  const spoke = `${h.net}99`;
  const p = h.lab.spawn(h.a, [process.execPath, RAWPOLL, 'ndp', '-i', h.ifA, '--answer', spoke, '--json']);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  assert.ok(await waitFor(() => /answering/.test(err), 5000), `the answerer did not start: ${err}`);
  // The peer adds the address with DAD this time: its Solicitation from :: is answered to all-nodes, S clear.
  must('ip', ['netns', 'exec', h.b, 'sysctl', '-qw', `net.ipv6.conf.${h.ifB}.accept_dad=1`]);
  // ::98 beside it, which nobody answers for, is the control: its DAD completes (no longer tentative, not failed).
  must('ip', ['-n', h.b, 'addr', 'add', `${spoke}/64`, 'dev', h.ifB]);
  must('ip', ['-n', h.b, 'addr', 'add', `${h.net}98/64`, 'dev', h.ifB]);
  const show = (a: string) => must('ip', ['-n', h.b, '-6', 'addr', 'show', 'dev', h.ifB, 'to', `${a}/128`]);
  assert.ok(await waitFor(() => /dadfailed/.test(show(spoke)), 5000, 100), show(spoke));
  assert.ok(await waitFor(() => !/tentative/.test(show(`${h.net}98`)), 5000, 100), show(`${h.net}98`));
  assert.match(show(`${h.net}98`), /inet6 .*::98\/64 scope global\s*\n/);
  p.kill('SIGINT');
  const { code } = await exitOf(p, 10000);
  assert.equal(code, 0, 'answering until stopped: being stopped is how it ends');
  const j = JSON.parse(out) as { answered: number; interrupted: string };
  valid('ndp', j);
  assert.ok(j.answered >= 1);
  assert.equal(j.interrupted, 'SIGINT');
});
