/**
 * The pcap engine's batches (src/tx/pcapengine.ts -> Link.sendBatch): a recording link stands in for the
 * PcapLink because what is tested here cannot be caused on a real interface at a chosen frame — a batch that fails
 * after k of its frames (link down, interface gone, any other error) — and because it can stall a call to make the
 * paced loop send short and long batches in turn. Every frame is checked with checksums recomputed here (RFC 1071),
 * against its template byte for byte outside the patched fields, and for contiguous IP IDs and per-flow seqs.
 * test/integration/pcap-batch.test.ts sends through the real injectBatch.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LinkDownError, LinkGoneError, RuntimeError } from '../../src/errors.js';
import { tryLoadAddon } from '../../src/link/addon.js';
import { parseSizes } from '../../src/cli/blast-args.js';
import { startBlast } from '../../src/tx/blast.js';
import type { Pacing } from '../../src/tx/schedule.js';
import { buildTemplates, makeFlows, type Templates } from '../../src/tx/templates.js';
import { onesSum } from '../helpers/bytes.js';

const MAGIC = 0xbe9be955;

const csum = onesSum;

/** 3 flows × simple IMIX: a 12-frame order cycle of 64, 576 and 1514-byte frames, so batches never line up alike. */
function templates(): Templates {
  return buildTemplates({
    srcMac: Buffer.from([2, 0, 0, 0, 0, 1]), dstMac: Buffer.from([2, 0, 0, 0, 0, 2]), dstIp: 0x0a000002,
    flows: makeFlows({ srcIps: [0x0a000001], srcPorts: [100, 102], dstPorts: [9, 9] }),
    sizes: parseSizes('64,576,1514', '7,4,1'), seq: true, mtu: 1500, ipId: 'counter',
  });
}

interface Step {
  /** Frames of this call that go out (default: all). */
  sent?: number;
  /** Thrown after them, as PcapLink.sendBatch throws (with `sent`). */
  error?: Error;
  /** Busy-wait this long in the call (the paced loop falls behind and sends a bigger batch next). */
  stallUs?: number;
  /** Added to sendRetries (queue waits). */
  waits?: number;
}

/** Records what a PcapLink would have put on the wire; `script(call, n)` says how each sendBatch call goes. */
class RecordingLink {
  sendRetries = 0;
  readonly frames: Buffer[] = [];
  readonly batchSizes: number[] = [];
  readonly watch = { check: (): 'up' | 'down' | 'gone' => 'up' };
  constructor(private readonly script: (call: number, n: number) => Step = () => ({})) {}

  sendBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, n: number): number {
    const s = this.script(this.batchSizes.length, n);
    this.batchSizes.push(n);
    const sent = Math.min(s.sent ?? n, n);
    for (let i = 0; i < sent; i++) this.frames.push(Buffer.from(buf.subarray(offsets[i], offsets[i] + lengths[i])));
    this.sendRetries += s.waits ?? 0;
    if (s.stallUs) for (const end = performance.now() + s.stallUs / 1000; performance.now() < end;) { /* stall */ }
    if (s.error) throw Object.assign(s.error, { sent });
    return n;
  }
}

async function run(walker: 'native' | 'js', link: RecordingLink, count: number, pacing: Pacing = {}) {
  const t = templates();
  const pristine = Buffer.from(t.frames);
  const r = await startBlast({ engine: 'pcap', iface: 'rec0', link, templates: t, count, pacing, planWalker: walker }).done;
  assert.deepEqual(t.frames, pristine, 'the templates are not written to');
  return { r, t };
}

/**
 * Checks every recorded frame: frame i is the template at order position pos(i), byte-exact outside the IP ID, the
 * checksums and the test header, checksums right, IP IDs 1, 2, 3, ... and each flow's seqs 1, 2, 3, ... with no gap.
 */
function checkFrames(frames: Buffer[], t: Templates, pos: (i: number) => number): number[] {
  const seqs = new Array<number>(t.nFlows).fill(1);
  const t0 = Date.now() / 1000;
  frames.forEach((d, i) => {
    const ti = t.order[pos(i) % t.order.length];
    const tpl = t.frames.subarray(t.offsets[ti], t.offsets[ti] + t.lengths[ti]);
    assert.equal(d.length, tpl.length, `length of frame ${i}`);
    const ip = t.ipOff;
    const udp = ip + 20;
    const hdr = t.seqOff;
    const patched = new Set([ip + 4, ip + 5, ip + 10, ip + 11, udp + 6, udp + 7]);
    for (let k = hdr + 4; k < hdr + 16; k++) patched.add(k);
    for (let k = 0; k < d.length; k++) if (!patched.has(k) && d[k] !== tpl[k]) assert.fail(`frame ${i} byte ${k}: ${d[k]}, template ${tpl[k]}`);
    assert.equal(csum(d, ip, ip + 20), 0xffff, `IPv4 header checksum of frame ${i}`);
    const udpLen = d.readUInt16BE(udp + 4);
    assert.equal(csum(d, udp, udp + udpLen, csum(d, ip + 12, ip + 20, 17 + udpLen)), 0xffff, `UDP checksum of frame ${i}`);
    assert.equal(d.readUInt32BE(hdr), MAGIC);
    assert.equal(d.readUInt16BE(ip + 4), (i + 1) & 0xffff, `IP ID of frame ${i}`);
    const flow = t.flowOf[ti];
    assert.equal(d.readUInt32BE(hdr + 4), seqs[flow]++, `seq of frame ${i} (flow ${flow})`);
    assert.ok(Math.abs(d.readUInt32BE(hdr + 8) - t0) < 30 && d.readUInt32BE(hdr + 12) < 1e6, `timestamp of frame ${i}`);
  });
  return seqs;
}

const bytesOf = (frames: Buffer[]) => frames.reduce((a, f) => a + f.length, 0);

// The plan walked in C (what the engine uses when the addon has it) and in JS (its fallback): the same frames.
const walkers = tryLoadAddon()?.planWriter ? (['native', 'js'] as const) : (['js'] as const);

for (const walker of walkers) describe(`plan walked in ${walker === 'native' ? 'C' : 'JS'}`, () => {
  test('unpaced: groups of 64 in one sendBatch each, every frame byte-exact, waits and bytes counted', async () => {
    const link = new RecordingLink(() => ({ waits: 3 }));
    const { r, t } = await run(walker, link, 1000);
    assert.deepEqual(link.batchSizes, [...new Array(15).fill(64), 40]);
    assert.equal(r.sent, 1000);
    assert.equal(r.notSent + r.notSentLinkDown, 0);
    assert.equal(r.waits, 3 * 16);
    assert.equal(link.frames.length, 1000);
    assert.equal(r.bytes, bytesOf(link.frames));
    const seqs = checkFrames(link.frames, t, (i) => i);
    assert.deepEqual(r.nextSeq, seqs);
  });

  test('the link goes down after 5 frames of a batch: the other 59 count as notSentLinkDown, the next frames carry the next IP ID and seq', async () => {
    const link = new RecordingLink((call) => (call === 2 ? { sent: 5, error: new LinkDownError('rec0') } : {}));
    const { r, t } = await run(walker, link, 1000);
    assert.equal(r.notSentLinkDown, 59);
    assert.equal(r.sent, 1000 - 59);
    assert.equal(r.notSent, 0);
    assert.equal(r.linkOutages, 1);
    assert.equal(r.linkEnd, null);
    assert.equal(r.error, null);
    assert.equal(link.frames.length, r.sent);
    assert.equal(r.bytes, bytesOf(link.frames));
    // Their slots passed: the frame after the outage is the one due 59 slots later, with the IP ID and seq next in line.
    const seqs = checkFrames(link.frames, t, (i) => (i < 2 * 64 + 5 ? i : i + 59));
    assert.deepEqual(r.nextSeq, seqs);
  });

  test('any other error after 7 frames of a batch ends the run: the rest of --count is notSent', async () => {
    const link = new RecordingLink((call) => (call === 1 ? { sent: 7, error: new RuntimeError('send on rec0 failed: boom') } : {}));
    const { r, t } = await run(walker, link, 1000);
    assert.equal(r.sent, 64 + 7);
    assert.equal(r.notSent, 1000 - 71);
    assert.equal(r.notSentLinkDown, 0);
    assert.equal(r.error, 'send on rec0 failed: boom');
    assert.equal(r.linkEnd, null);
    assert.equal(link.batchSizes.length, 2);
    assert.equal(r.bytes, bytesOf(link.frames));
    assert.deepEqual(r.nextSeq, checkFrames(link.frames, t, (i) => i));
  });

  test('the interface vanishes at the start of a batch: the run ends with linkEnd gone, nothing of that batch sent', async () => {
    const link = new RecordingLink((call) => (call === 3 ? { sent: 0, error: new LinkGoneError('rec0') } : {}));
    const { r, t } = await run(walker, link, 1000);
    assert.equal(r.linkEnd, 'gone');
    assert.equal(r.sent, 3 * 64);
    assert.equal(r.notSent, 1000 - 3 * 64);
    assert.deepEqual(r.nextSeq, checkFrames(link.frames, t, (i) => i));
  });

  test('paced, falling behind now and then: short and long batches of mixed sizes in turn, every frame byte-exact', async () => {
    // Every 10th call stalls 400 µs: at 100 kpps the next batch carries the ~40 frames that fell due meanwhile, the
    // ones a little later one or two. A slot that a short batch wrote over (a 1514-byte frame at slot 0 covers slots
    // 1-23 of 64-byte ones) must be copied afresh even when the next long batch puts the same frame there as before.
    const link = new RecordingLink((call) => (call % 10 === 9 ? { stallUs: 400 } : {}));
    const { r, t } = await run(walker, link, 3000, { pps: 100_000 });
    assert.equal(r.sent, 3000);
    const sizes = link.batchSizes;
    assert.ok(sizes.some((n, i) => i > 0 && n >= 16 && sizes[i - 1] <= 2), `short then long batches: ${sizes.join(',')}`);
    assert.equal(r.bytes, bytesOf(link.frames));
    assert.deepEqual(r.nextSeq, checkFrames(link.frames, t, (i) => i));
  });

  test('--burst bigger than one batch (1024 frames) goes out in several sendBatch calls, back to back', async () => {
    const link = new RecordingLink();
    const { r, t } = await run(walker, link, 2500, { burst: 2500 });
    assert.deepEqual(link.batchSizes, [1024, 1024, 452]);
    assert.equal(r.sent, 2500);
    assert.deepEqual(r.nextSeq, checkFrames(link.frames, t, (i) => i));
  });
});
