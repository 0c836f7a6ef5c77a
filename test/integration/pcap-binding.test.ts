// rawpoll's own libpcap binding (native/src/pcap.cc through src/link/pcap.ts) on a real veth pair: what it receives
// and when (kernel timestamps, nanosecond precision), promiscuous on and off, pcap_stats, and the errors a user can
// cause. The test runs its PcapLink inside a namespace by running a small script there with `ip netns exec`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { labsForThisFile, must, nsRun, ROOT, type TwoHostLab } from '../helpers/lab.js';

const { tmp, hosts } = labsForThisFile('rawpoll-pcapb-');

/**
 * Opens a PcapLink on IF with OPTS (JSON), prints "ready", collects UDP frames to port 7000 for MS milliseconds, then
 * prints one JSON line: the frames' wall-clock timestamps in ns (as strings), their lengths, the link's stats and
 * whether timestamps are ns.
 */
const SCRIPT = `
import { PcapLink } from ${JSON.stringify(resolve(ROOT, 'dist', 'src', 'link', 'pcap.js'))};
const [iface, optsJson, ms] = process.argv.slice(2);
const opts = JSON.parse(optsJson);
let link;
try {
  link = PcapLink.open(iface, 'udp dst port 7000', 4 << 20, opts);
} catch (e) {
  process.stdout.write(JSON.stringify({ error: e.message, name: e.name }) + '\\n');
  process.exit(0);
}
const ts = [];
const lens = [];
link.onFrame((f, sec, frac) => {
  ts.push(String(BigInt(sec) * 1000000000n + BigInt(link.nanosecond ? frac : frac * 1000)));
  lens.push(f.length);
});
process.stdout.write('ready\\n');
setTimeout(() => {
  process.stdout.write(JSON.stringify({ ts, lens, stats: link.stats(), nanosecond: link.nanosecond }) + '\\n');
  link.close();
}, Number(ms));
`;

const script = join(tmp, 'capture.mjs');
writeFileSync(script, SCRIPT);

/** Runs the capture script in B, sends `n` datagrams from A with socat, returns its report and B's promiscuity count. */
async function capture(h: TwoHostLab, opts: Record<string, unknown>, n: number): Promise<Record<string, any>> {
  const p = h.lab.spawn(h.b, [process.execPath, script, h.ifB, JSON.stringify(opts), '1500']);
  let out = '';
  p.stdout!.on('data', (d) => (out += d));
  const t0 = Date.now();
  while (!out.includes('ready\n') && !out.includes('"error"')) {
    if (Date.now() - t0 > 10000) throw new Error(`capture did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  if (out.includes('"error"')) return JSON.parse(out);
  const sentMs: number[] = [];
  // The kernel's own view of the socket while it is open: libpcap's PACKET_MR_PROMISC shows as promiscuity 1.
  const promiscuity = JSON.parse(must('ip', ['-n', h.b, '-d', '-j', 'link', 'show', h.ifB]))[0].promiscuity;
  for (let i = 0; i < n; i++) {
    sentMs.push(Date.now());
    spawnSync('ip', ['netns', 'exec', h.a, 'socat', '-u', '-', `UDP-SENDTO:${h.ipB}:7000`], { input: `datagram ${i}` });
  }
  await new Promise<void>((r) => p.on('close', () => r()));
  const rep = JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!);
  rep.sentMs = sentMs;
  rep.promiscuity = promiscuity;
  return rep;
}

test('nanosecond timestamps from the kernel: each frame stamped within the second it was sent, in ns', async () => {
  const h = hosts();
  const r = await capture(h, { nanosecond: true, tstampType: 'host' }, 5);
  assert.equal(r.nanosecond, true);
  assert.equal(r.ts.length, 5, JSON.stringify(r));
  for (let i = 0; i < 5; i++) {
    const d = Number(BigInt(r.ts[i]) - BigInt(r.sentMs[i]) * 1000000n);
    assert.ok(d > -5e6 && d < 1e9, `frame ${i} stamped ${d} ns after its send`);
  }
  // ns precision: not every stamp a multiple of 1000 (µs precision would make them all so)
  assert.ok(r.ts.some((t: string) => BigInt(t) % 1000n !== 0n), `timestamps ${r.ts.join(' ')}`);
  assert.deepEqual(r.lens, Array(5).fill(14 + 20 + 8 + 'datagram 0'.length));
  assert.equal(r.stats.received, 5, 'pcap_stats counts what passed the filter');
  assert.equal(r.stats.dropped, 0);
});

test('promiscuous mode: on by default (as tcpdump), off when asked; the kernel counts the difference', async () => {
  const h = hosts();
  // A veth passes every frame up whatever its MAC, so the oracle is the interface's promiscuity count while open.
  const off = await capture(h, { promisc: false }, 1);
  assert.equal(off.promiscuity, 0, 'promisc: false leaves the interface alone');
  assert.equal(off.ts.length, 1);
  const on = await capture(h, {}, 1);
  assert.equal(on.promiscuity, 1, 'the default puts it in promiscuous mode while the capture is open');
  assert.equal(on.ts.length, 1);
  const after = JSON.parse(must('ip', ['-n', h.b, '-d', '-j', 'link', 'show', h.ifB]))[0].promiscuity;
  assert.equal(after, 0, 'and closing it takes it out again');
});

test('errors a user can cause: a bad filter and an unsupported timestamp type are usage errors naming the value', async () => {
  const h = hosts();
  const badType = await capture(h, { tstampType: 'adapter_unsynced' }, 0);
  assert.equal(badType.name, 'UsageError', JSON.stringify(badType));
  assert.match(badType.error, /timestamp type 'adapter_unsynced' is not supported on \S+ \(supported here: host\)/);
  const r = nsRun(h.b, [process.execPath, '-e', `
    import(${JSON.stringify(resolve(ROOT, 'dist', 'src', 'link', 'pcap.js'))}).then(({ PcapLink }) => {
      try { PcapLink.open(${JSON.stringify(h.ifB)}, 'udp port 99999'); } catch (e) { console.log(e.name + ': ' + e.message); }
      try { PcapLink.open('nosuch0'); } catch (e) { console.log(e.name + ': ' + e.message); }
    });`]);
  assert.match(r.stdout, /^UsageError: bad capture filter 'udp port 99999': .+$/m);
  assert.match(r.stdout, /^RuntimeError: no interface 'nosuch0'/m);
});
