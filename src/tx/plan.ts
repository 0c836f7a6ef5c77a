/**
 * What changes from one blast frame to the next, as data: a patch plan built once from the templates, walked per frame
 * by both engines — PlanWriter here (the pcap engine), and the C loop of the native engine (native/src/plan.h), which
 * receives the plan flattened (encodePlan) and knows no header offsets of its own. The model is trafgen's
 * `packet_dyn` (netsniff-ng trafgen.c: counters, randomizers and checksum ranges applied per packet by
 * apply_counter / apply_csum16); unlike trafgen, checksums are not re-summed over their range but updated by RFC 1624
 * from the template's own value, so a 1514-byte frame costs what a 60-byte one does.
 *
 * Every offset comes from wire/ (IPV4_FIELD, UDP_FIELD; the templates' ipOff/udpOff from the header lengths there) and
 * proto/pktgen (PKTGEN_FIELD); every checksum rule from
 * wire/ (finishUdpChecksum, corruptChecksum): the templates carry correct checksums, and a deliberately bad one is
 * made per frame as the last step, on the right value.
 */
import { corruptChecksum } from '../wire/checksum.js';
import { IPV4_FIELD } from '../wire/ipv4.js';
import { finishUdpChecksum, UDP_FIELD } from '../wire/udp.js';
import { PKTGEN_FIELD } from '../proto/pktgen.js';
import { tryLoadAddon, type NativePlanWriter } from '../link/addon.js';
import type { Templates } from './templates.js';

/**
 * Where a patched field's value comes from:
 *   ipId     the run's IP ID counter (netpoll's: +1 per frame, mod 2^16), from Templates.ipIdStart;
 *   flowSeq  the frame's flow's pktgen seq counter (+1 per frame of that flow, from 1);
 *   tvSec    CLOCK_REALTIME seconds when the frame's group is handed to the link;
 *   tvUsec   ... and its microseconds.
 */
export type PatchSource = 'ipId' | 'flowSeq' | 'tvSec' | 'tvUsec';
/** The sources' numbers in the flat plan (encodePlan; native/src/plan.h reads the same numbers). */
export const SOURCE_CODE: Readonly<Record<PatchSource, number>> = { ipId: 0, flowSeq: 1, tvSec: 2, tvUsec: 3 };
const SOURCES: PatchSource[] = ['ipId', 'flowSeq', 'tvSec', 'tvUsec'];

/**
 * How a checksum field is finished after its update: 'ipv4' as is; 'udp' by finishUdpChecksum (a computed 0 goes
 * out as 0xffff: 0 would mean "no checksum").
 */
export type ChecksumRule = 'ipv4' | 'udp';
export const RULE_CODE: Readonly<Record<ChecksumRule, number>> = { ipv4: 0, udp: 1 };

export interface ChecksumField {
  /** Offset of the 16-bit checksum field in the frame. */
  offset: number;
  rule: ChecksumRule;
  /**
   * --bad-ip-checksum / --bad-udp-checksum: the finished value goes out as corruptChecksum(value). Done last, on the
   * right value, rather than carried along from a wrong template: RFC 1624 would keep it wrong by one, but as 0x0000
   * where the documented value is 0xffff.
   */
  corrupt: boolean;
}

export interface Patch {
  /** Offset of the field in the frame; big-endian, `width` bytes. */
  offset: number;
  width: 2 | 4;
  source: PatchSource;
  /** Offset of the checksum field this one is covered by (one of plan.checksums), or null. */
  checksum: number | null;
}

export interface PatchPlan {
  checksums: ChecksumField[];
  patches: Patch[];
}

/**
 * The plan for a run over `t`. Every template of a run shares one layout (one VLAN setting, one header stack), so one
 * plan serves them all; what differs per template — the checksums' constant part — each engine takes from the
 * template's bytes (templatePartials). With --ip-id N the IP ID stays the template's; with --no-seq there is no test
 * header to stamp; with --no-udp-checksum the UDP checksum stays 0 and nothing feeds it.
 */
export function planFor(t: Templates): PatchPlan {
  const ip = t.ipOff;
  // IPv6 (RFC 8200 §3) has no header checksum and no ID: its plan is the UDP checksum and what feeds it. The UDP
  // checksum's pseudo-header (addresses, length, next header) is constant per template, so it sits in the template's
  // checksum and so in templatePartials: nothing in the plan, or in the C loop, knows the family.
  const v4 = t.family === 4;
  if (!v4 && (t.ipIdStart >= 0 || t.ipChecksum === 'bad' || t.udpChecksum === 'none')) {
    throw new RangeError('IPv6 templates have no IP ID or header checksum to patch, and a UDP checksum always');
  }
  const udp = t.udpOff;
  const ipCsum = ip + IPV4_FIELD.checksum;
  const udpCsum = udp + UDP_FIELD.checksum;
  const udpFed = t.udpChecksum !== 'none' ? udpCsum : null;
  const ipBad = v4 && t.ipChecksum === 'bad';
  const udpBad = t.udpChecksum === 'bad';
  const checksums: ChecksumField[] = [];
  const patches: Patch[] = [];
  // A checksum is in the plan when a field it covers changes, or to be made bad (then in every frame).
  if (v4 && (t.ipIdStart >= 0 || ipBad)) checksums.push({ offset: ipCsum, rule: 'ipv4', corrupt: ipBad });
  if ((t.seqOff >= 0 && udpFed !== null) || udpBad) checksums.push({ offset: udpCsum, rule: 'udp', corrupt: udpBad });
  if (v4 && t.ipIdStart >= 0) patches.push({ offset: ip + IPV4_FIELD.id, width: 2, source: 'ipId', checksum: ipCsum });
  if (t.seqOff >= 0) {
    const h = t.seqOff;
    patches.push({ offset: h + PKTGEN_FIELD.seq, width: 4, source: 'flowSeq', checksum: udpFed });
    patches.push({ offset: h + PKTGEN_FIELD.tvSec, width: 4, source: 'tvSec', checksum: udpFed });
    patches.push({ offset: h + PKTGEN_FIELD.tvUsec, width: 4, source: 'tvUsec', checksum: udpFed });
  }
  return { checksums, patches };
}

/** Bytes a frame must have for the plan to apply: the end of its furthest field. */
export function planExtent(p: PatchPlan): number {
  let end = 0;
  for (const c of p.checksums) end = Math.max(end, c.offset + 2);
  for (const x of p.patches) end = Math.max(end, x.offset + x.width);
  return end;
}

/**
 * The plan as the C loop takes it (native/src/plan.h parse_plan):
 *   [nChecksums, nPatches,
 *    nChecksums × (offset, rule: 0 ipv4 | 1 udp, corrupt: 0 | 1),
 *    nPatches × (offset, width: 2 | 4, source: 0 ipId | 1 flowSeq | 2 tvSec | 3 tvUsec, checksum index | -1)]
 */
export function encodePlan(p: PatchPlan): Int32Array {
  const out = new Int32Array(2 + 3 * p.checksums.length + 4 * p.patches.length);
  out[0] = p.checksums.length;
  out[1] = p.patches.length;
  let k = 2;
  for (const c of p.checksums) {
    out[k++] = c.offset;
    out[k++] = RULE_CODE[c.rule];
    out[k++] = c.corrupt ? 1 : 0;
  }
  for (const x of p.patches) {
    out[k++] = x.offset;
    out[k++] = x.width;
    out[k++] = SOURCE_CODE[x.source];
    out[k++] = x.checksum === null ? -1 : p.checksums.findIndex((c) => c.offset === x.checksum);
  }
  return out;
}

/** The inverse of encodePlan (tests, and a check that both sides read the format alike). */
export function decodePlan(a: Int32Array): PatchPlan {
  const nc = a[0];
  const np = a[1];
  const checksums: ChecksumField[] = [];
  const patches: Patch[] = [];
  let k = 2;
  for (let i = 0; i < nc; i++, k += 3) checksums.push({ offset: a[k], rule: a[k + 1] === RULE_CODE.udp ? 'udp' : 'ipv4', corrupt: a[k + 2] !== 0 });
  for (let i = 0; i < np; i++, k += 4) {
    patches.push({ offset: a[k], width: a[k + 1] as 2 | 4, source: SOURCES[a[k + 2]], checksum: a[k + 3] < 0 ? null : checksums[a[k + 3]].offset });
  }
  return { checksums, patches };
}

const not16 = (v: number) => ~v & 0xffff;

/**
 * Per template and checksum field, the constant part of RFC 1624 eqn 3 (HC' = ~(~HC + ~m + m')): ~HC plus ~m for each
 * 16-bit word of the fields that feed it, read from the template. A frame's checksum is then
 * ~fold(partial + its new words). Laid out template-major: partials[ti * nChecksums + c].
 */
export function templatePartials(t: Templates, p: PatchPlan): Uint32Array {
  const nc = p.checksums.length;
  const out = new Uint32Array(t.offsets.length * nc);
  for (let ti = 0; ti < t.offsets.length; ti++) {
    const f = t.frames;
    const o = t.offsets[ti];
    for (let c = 0; c < nc; c++) {
      const at = o + p.checksums[c].offset;
      let s = not16((f[at] << 8) | f[at + 1]);
      for (const x of p.patches) {
        if (x.checksum !== p.checksums[c].offset) continue;
        for (let i = 0; i < x.width; i += 2) s += not16((f[o + x.offset + i] << 8) | f[o + x.offset + i + 1]);
      }
      out[ti * nc + c] = s;
    }
  }
  return out;
}

/**
 * Walks a plan in JS: the plan's semantics stated in TS, next to its C twin (native/src/plan.h, which the engines run:
 * see groupWriter). Tests hold the two to the same bytes; the pcap engine falls back to this one with an addon built
 * before planwriter.cc. Plain byte stores and 32-bit folds: no Buffer.write* calls, divisions or allocations.
 */
export class PlanWriter {
  /** Next IP ID (taken mod 2^16 when written). */
  ipId: number;
  /** Next pktgen seq of each flow. */
  readonly seqs: Uint32Array;
  private readonly views: Buffer[];
  private readonly flowOf: Uint32Array;
  private readonly order: Uint32Array;
  private readonly partials: Uint32Array;
  private readonly nc: number;
  private readonly np: number;
  private readonly cOff: Int32Array;
  private readonly cUdp: Uint8Array;
  private readonly cBad: Uint8Array;
  private readonly pOff: Int32Array;
  private readonly pWidth: Int32Array;
  private readonly pSrc: Int32Array;
  private readonly pCs: Int32Array;
  private readonly usesIpId: boolean;
  private readonly usesSeq: boolean;
  /** The current frame's value of each source, by SOURCE_CODE. */
  private readonly values = new Uint32Array(4);
  private readonly sums: Float64Array;

  constructor(t: Templates, plan: PatchPlan, seqStart = 1) {
    const extent = planExtent(plan);
    for (let i = 0; i < t.offsets.length; i++) {
      if (t.lengths[i] < extent) throw new RangeError(`template ${i} has ${t.lengths[i]} bytes: the patch plan needs ${extent}`);
    }
    this.views = Array.from({ length: t.offsets.length }, (_, i) => t.frames.subarray(t.offsets[i], t.offsets[i] + t.lengths[i]));
    this.flowOf = t.flowOf;
    this.order = t.order;
    this.partials = templatePartials(t, plan);
    this.nc = plan.checksums.length;
    this.np = plan.patches.length;
    const flat = encodePlan(plan);
    this.cOff = new Int32Array(this.nc);
    this.cUdp = new Uint8Array(this.nc);
    this.cBad = new Uint8Array(this.nc);
    for (let c = 0, k = 2; c < this.nc; c++, k += 3) {
      this.cOff[c] = flat[k];
      this.cUdp[c] = flat[k + 1] === RULE_CODE.udp ? 1 : 0;
      this.cBad[c] = flat[k + 2];
    }
    this.pOff = new Int32Array(this.np);
    this.pWidth = new Int32Array(this.np);
    this.pSrc = new Int32Array(this.np);
    this.pCs = new Int32Array(this.np);
    for (let i = 0, k = 2 + 3 * this.nc; i < this.np; i++, k += 4) {
      this.pOff[i] = flat[k];
      this.pWidth[i] = flat[k + 1];
      this.pSrc[i] = flat[k + 2];
      this.pCs[i] = flat[k + 3];
    }
    this.usesIpId = plan.patches.some((x) => x.source === 'ipId');
    this.usesSeq = plan.patches.some((x) => x.source === 'flowSeq');
    this.ipId = Math.max(0, t.ipIdStart);
    this.seqs = new Uint32Array(t.nFlows).fill(seqStart);
    this.sums = new Float64Array(this.nc);
  }

  /** The wall-clock time stamped into the frames written from now on (tvSec, tvUsec sources). */
  setTime(sec: number, usec: number): void {
    this.values[SOURCE_CODE.tvSec] = sec;
    this.values[SOURCE_CODE.tvUsec] = usec;
  }

  /**
   * Writes the next frame, of template `ti`, at dst[at..]. copy = false when dst[at..] already holds a frame of that
   * template written by this writer: only the plan's fields differ from the template then, and all are rewritten.
   */
  write(dst: Uint8Array, at: number, ti: number, copy: boolean): void {
    if (copy) dst.set(this.views[ti], at);
    const v = this.values;
    if (this.usesIpId) v[0] = this.ipId++ & 0xffff;
    if (this.usesSeq) v[1] = this.seqs[this.flowOf[ti]]++;
    const nc = this.nc;
    const sums = this.sums;
    for (let c = 0; c < nc; c++) sums[c] = this.partials[ti * nc + c];
    for (let i = 0; i < this.np; i++) {
      const x = v[this.pSrc[i]];
      const o = at + this.pOff[i];
      const cs = this.pCs[i];
      if (this.pWidth[i] === 4) {
        dst[o] = x >>> 24;
        dst[o + 1] = (x >>> 16) & 255;
        dst[o + 2] = (x >>> 8) & 255;
        dst[o + 3] = x & 255;
        if (cs >= 0) sums[cs] += (x >>> 16) + (x & 0xffff);
      } else {
        dst[o] = (x >>> 8) & 255;
        dst[o + 1] = x & 255;
        if (cs >= 0) sums[cs] += x & 0xffff;
      }
    }
    for (let c = 0; c < nc; c++) {
      let s = sums[c];
      s = (s & 0xffff) + (s >>> 16);
      let r = ~((s & 0xffff) + (s >>> 16)) & 0xffff;
      if (this.cUdp[c]) r = finishUdpChecksum(r);
      if (this.cBad[c]) r = corruptChecksum(r);
      const o = at + this.cOff[c];
      dst[o] = r >>> 8;
      dst[o + 1] = r & 255;
    }
  }

  /** Takes back the counters of the last frame written of template `ti`: it did not go out, the next one carries them. */
  unwrite(ti: number): void {
    if (this.usesIpId) this.ipId--;
    if (this.usesSeq) this.seqs[this.flowOf[ti]]--;
  }

  /** NativePlanWriter.fill, in JS: frames of order positions pos .. pos+m-1 back to back from buf[0]. */
  fill(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, pos: number, m: number, tvSec: number, tvUsec: number): number {
    this.setTime(tvSec, tvUsec);
    const { order } = this;
    const L = order.length;
    let at = 0;
    for (let i = 0, p = pos % L; i < m; i++, p = p + 1 === L ? 0 : p + 1) {
      const ti = order[p];
      const len = this.views[ti].length;
      if (at + len > buf.length) throw new RangeError(`fill: frame ${i} ends beyond the buffer's ${buf.length} bytes`);
      this.write(buf, at, ti, true);
      offsets[i] = at;
      lengths[i] = len;
      at += len;
    }
    return at;
  }

  /** NativePlanWriter.rewind: the frames of order positions pos .. pos+k-1 did not go out. */
  rewind(pos: number, k: number): void {
    for (let s = k - 1; s >= 0; s--) this.unwrite(this.order[(pos + s) % this.order.length]);
  }

  counters(): { ipId: number; seq: number[] } {
    return { ipId: this.ipId & 0xffff, seq: [...this.seqs] };
  }
}

/** What the pcap engine writes its groups with: the C walker when the addon has it, else PlanWriter. */
export type GroupWriter = Pick<NativePlanWriter, 'fill' | 'rewind' | 'counters'>;

export function groupWriter(t: Templates, plan: PatchPlan, prefer: 'native' | 'js' = 'native'): GroupWriter {
  const addon = prefer === 'native' ? tryLoadAddon() : null;
  if (!addon?.planWriter) return new PlanWriter(t, plan);
  return addon.planWriter({
    frames: t.frames, offsets: t.offsets, lengths: t.lengths, flows: t.flowOf, order: t.order, nFlows: t.nFlows,
    plan: encodePlan(plan), ipId: Math.max(0, t.ipIdStart), seqStart: 1,
  });
}
