/**
 * The batched inject (native/src/pcap.cc injectBatch, src/link/pcap.ts PcapLink.sendBatch) on a real veth pair:
 * what reaches the peer (tcpdump there, byte for byte and in order), a batch that fails part way (a frame the link
 * cannot carry: EMSGSIZE from the kernel's packet_snd), arguments refused before anything is sent, and the link taken
 * down or deleted under an open handle. The sender runs as a small script inside the namespace (`ip netns exec`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parsePcap } from '../../src/wire/pcapfile.js';
import { exitOf, labsForThisFile, must, ROOT, type TwoHostLab } from '../helpers/lab.js';

const { tmp, hosts } = labsForThisFile('rawpoll-pcapbatch-');

/** Experimental ethertype (IEEE 802 local): nothing else in the lab sends it. */
const ETHERTYPE = 0x88b5;

/** Frame `id` of `len` bytes to DST: Ethernet header, the id (u32), then bytes (id + k) & 255. Same in the script. */
function frame(id: number, len: number, dst: Buffer): Buffer {
  const f = Buffer.alloc(len);
  dst.copy(f, 0);
  Buffer.from([2, 0, 0, 0, 0x0b, 1]).copy(f, 6);
  f.writeUInt16BE(ETHERTYPE, 12);
  f.writeUInt32BE(id, 14);
  for (let k = 18; k < len; k++) f[k] = (id + k) & 255;
  return f;
}

const SCRIPT = `
import { PcapLink } from ${JSON.stringify(resolve(ROOT, 'dist', 'src', 'link', 'pcap.js'))};
import { loadAddon } from ${JSON.stringify(resolve(ROOT, 'dist', 'src', 'link', 'addon.js'))};
const [iface, mode, dstHex] = process.argv.slice(2);
const dst = Buffer.from(dstHex, 'hex');
${frame.toString()}
const ETHERTYPE = ${ETHERTYPE};
// Frames laid out back to front with 3-byte gaps, so offsets (not adjacency) say where each one is.
function pack(specs) {
  const total = specs.reduce((a, [, len]) => a + len + 3, 0);
  const buf = Buffer.alloc(total);
  const offsets = new Uint32Array(specs.length);
  const lengths = new Uint32Array(specs.length);
  let end = total;
  specs.forEach(([id, len], i) => {
    end -= len + 3;
    frame(id, len, dst).copy(buf, end);
    offsets[i] = end;
    lengths[i] = len;
  });
  return { buf, offsets, lengths };
}
const addon = loadAddon();
const link = PcapLink.open(iface, 'arp and arp[6:2] = 9');
const raw = addon.pcapOpen(iface, { filter: 'arp and arp[6:2] = 9' }, () => {}, () => {});
const caught = (f) => { try { return { returned: f() }; } catch (e) { return { name: e.name, message: e.message, sent: e.sent }; } };
const out = {};
if (mode === 'batch') {
  const p = pack([[1, 60], [2, 60]]);
  out.bad = [
    caught(() => raw.injectBatch(p.buf.subarray(0, p.offsets[0] + 59), p.offsets, p.lengths, 1)),
    caught(() => raw.injectBatch(p.buf, p.offsets, p.lengths, 3)),
    caught(() => raw.injectBatch(p.buf, p.offsets, p.lengths, 1.5)),
    caught(() => raw.injectBatch(p.buf, p.offsets, p.lengths, -1)),
    caught(() => raw.injectBatch(p.buf, Array.from(p.offsets), p.lengths, 1)),
    caught(() => raw.injectBatch(p.buf, p.offsets, new Int32Array(2), 1)),
    caught(() => raw.injectBatch(p.buf, p.offsets, p.lengths)),
    caught(() => link.sendBatch(p.buf.subarray(0, 10), p.offsets, p.lengths, 2)),
  ];
  const bad = pack([[1000, 60], [1001, 1514], [1002, 1600], [1003, 60]]);
  out.partial = raw.injectBatch(bad.buf, bad.offsets, bad.lengths, 4);
  const bad2 = pack([[2000, 60], [2001, 60], [2002, 1600], [2003, 60]]);
  out.partialLink = caught(() => link.sendBatch(bad2.buf, bad2.offsets, bad2.lengths, 4));
  const full = pack(Array.from({ length: 200 }, (_, i) => [i, 60 + ((i * 37) % 1455)]));
  out.full = raw.injectBatch(full.buf, full.offsets, full.lengths, 200);
  const more = pack(Array.from({ length: 50 }, (_, i) => [3000 + i, 60 + i]));
  out.linkFull = caught(() => link.sendBatch(more.buf, more.offsets, more.lengths, 50));
  out.empty = raw.injectBatch(more.buf, more.offsets, more.lengths, 0);
} else if (mode === 'queue' || mode === 'stuck') {
  // The test put a slow tbf qdisc on the link: frames beyond its limit come back ENOBUFS until it drains.
  const n = mode === 'queue' ? 40 : 4;
  const p = pack(Array.from({ length: n }, (_, i) => [5000 + i, 1000]));
  let t0 = Date.now();
  out.raw = raw.injectBatch(p.buf, p.offsets, p.lengths, n);
  out.rawMs = Date.now() - t0;
  const q = pack(Array.from({ length: n / 2 }, (_, i) => [6000 + i, 1000]));
  t0 = Date.now();
  out.link = caught(() => link.sendBatch(q.buf, q.offsets, q.lengths, n / 2));
  out.linkMs = Date.now() - t0;
  out.retries = link.sendRetries;
} else {
  // 'down' / 'gone': wait for the test to take the link down or delete it, then send through both handles.
  process.stdout.write('ready\\n');
  const t0 = Date.now();
  const done = () => { const s = addon.linkState(iface); return mode === 'down' ? s.index !== 0 && !s.up : s.index === 0; };
  while (!done()) {
    if (Date.now() - t0 > 10000) { process.stdout.write(JSON.stringify({ error: 'the link did not change' }) + '\\n'); process.exit(1); }
    await new Promise((r) => setTimeout(r, 10));
  }
  const p = pack([[1, 60], [2, 60], [3, 60]]);
  out.raw = raw.injectBatch(p.buf, p.offsets, p.lengths, 3);
  out.link = caught(() => link.sendBatch(p.buf, p.offsets, p.lengths, 3));
}
process.stdout.write(JSON.stringify(out) + '\\n');
link.close();
raw.close();
`;
const script = join(tmp, 'batch.mjs');
writeFileSync(script, SCRIPT);

const macOf = (s: string) => Buffer.from(s.split(':').map((x) => parseInt(x, 16)));

/** tcpdump on B for our ethertype while `run` goes; returns the captured frames once `n` arrived (or after 10 s). */
async function capture(L: TwoHostLab, n: number, run: () => Promise<void>): Promise<Buffer[]> {
  const file = join(tmp, `cap-${Math.random().toString(36).slice(2)}.pcap`);
  const p = L.lab.spawn(L.b, ['tcpdump', '-n', '-i', L.ifB, '-B', '16384', '-U', '-c', String(n), '-w', file, `ether proto ${ETHERTYPE}`]);
  await new Promise<void>((res) => p.stderr!.on('data', (d: Buffer) => { if (/listening on/.test(d.toString())) res(); }));
  await run();
  const exited = await new Promise<boolean>((res) => {
    if (p.exitCode !== null) return res(true);
    const t = setTimeout(() => { p.kill('SIGINT'); res(false); }, 10000);
    p.on('exit', () => { clearTimeout(t); res(true); });
  });
  await new Promise((r) => setTimeout(r, 100));
  const recs = parsePcap(readFileSync(file)).records;
  assert.ok(exited, `tcpdump saw only ${recs.length} of ${n} frames`);
  return recs.map((r) => r.data);
}

async function runScript(L: TwoHostLab, mode: string, whenReady?: () => void): Promise<Record<string, any>> {
  const p = L.lab.spawn(L.a, [process.execPath, script, L.ifA, mode, macOf(L.macB).toString('hex')]);
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => {
    out += d;
    if (whenReady && out.includes('ready\n')) {
      whenReady();
      whenReady = undefined;
    }
  });
  p.stderr!.on('data', (d) => (err += d));
  const { code } = await exitOf(p);
  assert.equal(code, 0, `script ${mode} failed: ${err}${out}`);
  return JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!);
}

test('injectBatch: frames 0..n-1 reach the peer in order and byte-exact; a frame the link cannot carry stops the batch there; bad arguments send nothing', async () => {
  const L = hosts();
  const dst = macOf(L.macB);
  let out: Record<string, any> = {};
  // What must arrive, in order: the two frames before each oversized one, all 200, all 50; nothing else.
  const want = [
    frame(1000, 60, dst), frame(1001, 1514, dst), frame(2000, 60, dst), frame(2001, 60, dst),
    ...Array.from({ length: 200 }, (_, i) => frame(i, 60 + ((i * 37) % 1455), dst)),
    ...Array.from({ length: 50 }, (_, i) => frame(3000 + i, 60 + i, dst)),
  ];
  const got = await capture(L, want.length, async () => {
    out = await runScript(L, 'batch');
  });

  const [beyond, nBeyond, fractional, negative, plainArray, int32, missing, linkBeyond] = out.bad;
  assert.equal(beyond.name, 'RangeError');
  assert.match(beyond.message, /frame 0 \(offset \d+, length 60\) ends beyond the buffer's \d+ bytes/);
  assert.equal(nBeyond.name, 'RangeError');
  assert.match(nBeyond.message, /n 3 must be an integer 0-2/);
  assert.equal(fractional.name, 'RangeError');
  assert.equal(negative.name, 'RangeError');
  for (const e of [plainArray, int32, missing]) assert.equal(e.name, 'TypeError', JSON.stringify(e));
  assert.equal(linkBeyond.name, 'RangeError', 'PcapLink.sendBatch passes a bad argument on as it is');

  assert.deepEqual(out.partial, { sent: 2, waits: 0, code: 'EMSGSIZE', error: out.partial.error });
  assert.match(out.partial.error, /Message too long/);
  assert.equal(out.partialLink.name, 'RuntimeError');
  assert.equal(out.partialLink.sent, 2);
  assert.match(out.partialLink.message, new RegExp(`send on ${L.ifA} failed: .*Message too long`));
  assert.equal(out.full.sent, 200);
  assert.equal(out.full.code, '');
  assert.equal(out.full.error, '');
  assert.deepEqual(out.linkFull, { returned: 50 });
  assert.deepEqual(out.empty, { sent: 0, waits: 0, code: '', error: '' });

  assert.equal(got.length, want.length);
  got.forEach((f, i) => assert.ok(f.equals(want[i]), `frame ${i}: id ${f.readUInt32BE(14)} (${f.length} bytes), want id ${want[i].readUInt32BE(14)} (${want[i].length} bytes)`));
});

test('a full queue is waited out: every frame arrives once and in order, the waits are counted', async () => {
  const L = hosts();
  const dst = macOf(L.macB);
  // 1 Mbit/s drains a 1000-byte frame in 8 ms; the queue holds two: the rest of each batch waits its turn.
  must('ip', ['netns', 'exec', L.a, 'tc', 'qdisc', 'add', 'dev', L.ifA, 'root', 'tbf', 'rate', '1mbit', 'burst', '1600', 'limit', '2000']);
  let out: Record<string, any> = {};
  const want = [...Array.from({ length: 40 }, (_, i) => frame(5000 + i, 1000, dst)), ...Array.from({ length: 20 }, (_, i) => frame(6000 + i, 1000, dst))];
  const got = await capture(L, want.length, async () => {
    out = await runScript(L, 'queue');
  });
  assert.equal(out.raw.sent, 40);
  assert.equal(out.raw.code, '');
  assert.ok(out.raw.waits > 0, `waits ${out.raw.waits}`);
  // 40 frames of 8000 bits at 1 Mbit/s, less what the bucket and the queue took at once: they were waited for.
  assert.ok(out.rawMs >= 250, `the batch took ${out.rawMs} ms`);
  assert.deepEqual(out.link, { returned: 20 });
  assert.ok(out.retries > 0, `PcapLink.sendRetries ${out.retries}`);
  assert.equal(got.length, want.length);
  got.forEach((f, i) => assert.ok(f.equals(want[i]), `frame ${i}: id ${f.readUInt32BE(14)}, want ${want[i].readUInt32BE(14)}`));
});

test('a queue that stays full for 2 s ends the batch: code ENOBUFS, sent counts what went out; PcapLink.sendBatch throws a RuntimeError with sent', async () => {
  const L = hosts();
  // 2 kbit/s: a 1000-byte frame takes 4 s to drain, so the frame after the first two waits longer than 2 s.
  must('ip', ['netns', 'exec', L.a, 'tc', 'qdisc', 'add', 'dev', L.ifA, 'root', 'tbf', 'rate', '2kbit', 'burst', '1600', 'limit', '1500']);
  const out = await runScript(L, 'stuck');
  assert.equal(out.raw.code, 'ENOBUFS', JSON.stringify(out.raw));
  assert.ok(out.raw.sent >= 1 && out.raw.sent < 4, `sent ${out.raw.sent}`);
  assert.match(out.raw.error, /the device queue stayed full for 2000 ms/);
  assert.ok(out.raw.waits > 0);
  assert.ok(out.rawMs >= 2000 && out.rawMs < 4000, `gave up after ${out.rawMs} ms`);
  assert.equal(out.link.name, 'RuntimeError');
  // The frame queued by the first batch leaves at ~4 s: one of the second batch may take its place, not two.
  assert.ok(out.link.sent === 0 || out.link.sent === 1, `sent ${out.link.sent}`);
  assert.match(out.link.message, new RegExp(`send on ${L.ifA}: the device queue stayed full for 2000 ms`));
  assert.ok(out.linkMs >= 2000, `gave up after ${out.linkMs} ms`);
});

test('the link goes down under an open handle: injectBatch says ENETDOWN with nothing sent, PcapLink.sendBatch throws LinkDownError with sent 0', async () => {
  const L = hosts();
  const out = await runScript(L, 'down', () => must('ip', ['-n', L.a, 'link', 'set', L.ifA, 'down']));
  assert.equal(out.raw.sent, 0);
  assert.equal(out.raw.code, 'ENETDOWN');
  assert.equal(out.link.name, 'LinkDownError');
  assert.equal(out.link.sent, 0);
});

test('the interface is deleted under an open handle: injectBatch says ENXIO, PcapLink.sendBatch throws LinkGoneError with sent 0', async () => {
  const L = hosts();
  const out = await runScript(L, 'gone', () => must('ip', ['-n', L.a, 'link', 'del', L.ifA]));
  assert.equal(out.raw.sent, 0);
  // packet_snd finds no device for the socket's ifindex (net/packet/af_packet.c): ENXIO, as PcapLink classifies it.
  assert.equal(out.raw.code, 'ENXIO', JSON.stringify(out.raw));
  assert.equal(out.link.name, 'LinkGoneError');
  assert.equal(out.link.sent, 0);
});
