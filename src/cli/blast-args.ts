/**
 * `rawpoll blast`'s flag grammar (pure): rates, durations, ranges, frame sizes, a start time, the link-down policy.
 * Every error is a UsageError that names the bad value and what would be valid.
 */
import { UsageError } from '../errors.js';
import type { LinkDownPolicy } from '../tx/blast.js';
import type { SizeSpec } from '../tx/templates.js';
import { parseIpv4, parsePort } from '../wire/addr.js';
import { parseEndpointAny, parseIpAddress, type IpAddress } from '../wire/endpoint.js';
import { ETH_HEADER_LEN, ETH_MIN_FRAME } from '../wire/ethernet.js';
import { formatIpv6Addr, IPV6_ADDR_LEN } from '../wire/ipv6.js';
import { VLAN_TAG_LEN } from '../wire/vlan.js';

/** --to IP[:PORT]: the address, and the port when one is given (a typo is the codec's AddressError, exit 2). */
export function parseDestination(to: string): { ip: number; port: number | undefined } {
  const m = /^(.*?)(?::(\d+))?$/.exec(to.trim())!;
  return { ip: parseIpv4(m[1], '--to'), port: m[2] !== undefined ? parsePort(m[2], '--to port') : undefined };
}

/**
 * --to of either family: IP[:PORT] or [IPv6]:PORT, or the address alone (IPv6 bare, or in brackets); the port when one
 * is given. A typo is the codec's AddressError (exit 2), naming the value and both forms.
 */
export function parseDestinationAny(to: string): { addr: IpAddress; port: number | undefined } {
  const t = String(to).trim();
  // A port is there when brackets close before ':' or, without brackets, when there is exactly one ':' (IPv4:PORT).
  const hasPort = t.startsWith('[') ? /\]:/.test(t) : (t.match(/:/g) ?? []).length === 1;
  const e = parseEndpointAny(t, '--to', hasPort ? undefined : 0);
  const { port, ...addr } = e;
  return { addr: addr as IpAddress, port: hasPort ? port : undefined };
}

/** Most addresses a --src-ip range may hold: each is a flow (with templates of its own). */
export const MAX_SRC_IPS = 65536;

/**
 * --src-ip IPv6[-IPv6] (e.g. fd00::10-fd00::1f): the addresses from LO to HI, counting in the low bits, as 16-byte
 * Buffers. At most MAX_SRC_IPS; a reversed range is refused naming its right order.
 */
export function parseIpv6Range(s: string, what = '--src-ip'): Buffer[] {
  const parts = String(s).trim().split('-');
  if (parts.length > 2 || parts.some((x) => x.trim() === '')) {
    throw new UsageError(`bad ${what} '${s}': expected an IPv6 address or a range LO-HI like fd00::10-fd00::1f`);
  }
  const addrs = parts.map((x) => {
    const a = parseIpAddress(x.trim(), what);
    if (a.family !== 6 || a.zone !== undefined) throw new UsageError(`bad ${what} '${s}': '${x.trim()}' is not an IPv6 address like fd00::10 (the destination is IPv6; no zone)`);
    return a.ip6;
  });
  const big = (b: Buffer) => BigInt('0x' + b.toString('hex'));
  const lo = big(addrs[0]);
  const hi = big(addrs[addrs.length - 1]);
  if (lo > hi) {
    throw new UsageError(`bad ${what} '${s}': the range runs backwards (${formatIpv6Addr(addrs[0])} > ${formatIpv6Addr(addrs[1])}); write it low-high: ${formatIpv6Addr(addrs[1])}-${formatIpv6Addr(addrs[0])}`);
  }
  if (hi - lo >= BigInt(MAX_SRC_IPS)) {
    throw new UsageError(`${what} range ${s} is too wide: ${hi - lo + 1n} addresses, at most ${MAX_SRC_IPS}`);
  }
  return Array.from({ length: Number(hi - lo) + 1 }, (_, k) => Buffer.from((lo + BigInt(k)).toString(16).padStart(2 * IPV6_ADDR_LEN, '0'), 'hex'));
}

/**
 * The IPv4 header's options and those IPv6 forbids, refused by name over IPv6 before anything is opened: there is no
 * DF bit, IP ID or header checksum in IPv6 (RFC 8200 §3, §5), and the UDP checksum is mandatory (§8.1).
 */
export function refuseOverIpv6(f: { df?: boolean; ipId?: string; badIpChecksum?: boolean; udpChecksum?: boolean }, to: string): void {
  const why = (opt: string, reason: string) => new UsageError(`${opt} is IPv4 only and --to ${to} is IPv6: ${reason}; drop ${opt}`);
  if (f.df) throw why('--df', "IPv6 has no Don't Fragment bit (routers never fragment IPv6, RFC 8200 §5)");
  if (f.ipId !== undefined) throw why('--ip-id', 'IPv6 has no IP ID field (RFC 8200 §3; only a Fragment header carries an identification)');
  if (f.badIpChecksum) throw why('--bad-ip-checksum', 'IPv6 has no header checksum to corrupt (RFC 8200 §3); --bad-udp-checksum works');
  if (f.udpChecksum === false) {
    throw new UsageError(`--no-udp-checksum is refused over IPv6 (--to ${to}): the UDP checksum is mandatory (RFC 8200 §8.1; a receiver discards a zero one); drop it, or use --bad-udp-checksum`);
  }
}

/** Highest --rate: one frame per ns (the schedule's resolution), or 1 Tbit/s of frames. */
export const MAX_PPS = 1e9;
export const MAX_BPS = 1e12;

const SI: Record<string, number> = { '': 1, k: 1e3, K: 1e3, m: 1e6, M: 1e6, g: 1e9, G: 1e9 };

/** "250kpps", "1.5Mpps", "10000" (pps) or "800Mbps", "2Gbps", "100kbps" (bits/s of frames). */
export function parseRate(s: string): { pps?: number; bps?: number } {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(pps|bps|b\/s|bit\/s)?\s*$/.exec(s);
  const v = m ? Number(m[1]) * SI[m[2]] : NaN;
  if (!m || !(v > 0) || !Number.isFinite(v)) {
    throw new UsageError(`bad --rate '${s}': expected frames/s like 10000, 250kpps, 1.5Mpps or bits/s of frames like 800Mbps, 2Gbps`);
  }
  const bits = !!m[3] && m[3] !== 'pps';
  // Written out in digits a rate can be as absurd as 1e20pps: past one frame per ns (the schedule's unit) there is
  // no pace left to keep, and a run would go unpaced while claiming a rate.
  if (bits ? v > MAX_BPS : v > MAX_PPS) {
    throw new UsageError(`bad --rate '${s}': ${bits ? `${v} bits/s is above ${MAX_BPS / 1e12} Tbps` : `${v} frames/s is above ${MAX_PPS / 1e9} Gpps (one frame per ns)`}; ` +
      'expected frames/s like 10000, 250kpps, 1.5Mpps or bits/s of frames like 800Mbps, 2Gbps (leave --rate out for as fast as the NIC takes)');
  }
  return bits ? { bps: v } : { pps: v };
}

const DUR: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, min: 60e9, h: 3600e9 };

/** A duration in ns: "500ns", "10us", "1ms", "1.5s", "2m"; a bare number means `bareUnit`. */
export function parseDuration(s: string, what: string, bareUnit: 'ns' | 'us' | 'ms' | 's' = 's'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|min|m|h)?\s*$/.exec(s);
  const v = m ? Number(m[1]) * DUR[m[2] ?? bareUnit] : NaN;
  if (!m || !(v > 0) || !Number.isFinite(v)) {
    throw new UsageError(`bad ${what} '${s}': expected a positive duration like 500ns, 10us, 1ms, 2.5s (a bare number is ${bareUnit})`);
  }
  return v;
}

/** "9" or "10000-10015" → [lo, hi]. */
export function parseRange(s: string, what: string, lo: number, hi: number, parse: (x: string) => number = Number): [number, number] {
  const parts = s.split('-');
  const bad = () => new UsageError(`bad ${what} '${s}': expected N or LO-HI with values ${lo}-${hi}`);
  if (parts.length > 2) throw bad();
  let a: number, b: number;
  try {
    a = parse(parts[0].trim());
    b = parts.length === 2 ? parse(parts[1].trim()) : a;
  } catch {
    throw bad();
  }
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < lo || b > hi || a > b) throw bad();
  return [a, b];
}

/** The classic "simple IMIX": 7 × 64, 4 × 576, 1 × 1518 (here 1514: frames are counted without the 4-byte FCS). */
export const SIMPLE_IMIX = { sizes: [64, 576, 1514], weights: [7, 4, 1] };

/**
 * Frame sizes --size accepts before the link is known: the Ethernet minimum up to the largest frame any MTU allows
 * (an IPv4 datagram is at most 65535 bytes, plus 14 bytes of Ethernet header and 4 of 802.1Q). buildTemplates then
 * applies the link's own MTU.
 */
export const SIZE_MIN = ETH_MIN_FRAME;
export const SIZE_MAX = 65535 + ETH_HEADER_LEN + VLAN_TAG_LEN;
/** Distinct sizes a LO-HI range may span: each is a template per flow (60-9014, jumbo frames, fits). */
export const MAX_RANGE_SIZES = 10000;

/** What a frame size may be on the link at hand, and why (named in the error): from templates.ts sizeLimits. */
export interface SizeLimits {
  min: number;
  max: number;
  /** e.g. "veth0 (MTU 1500): … 1514 = MTU 1500 + 14 bytes of Ethernet header" */
  why: string;
}

/**
 * --size N | A,B,C (cycled) | LO-HI (random, uniform); --imix W,W,W weights the comma list (alone: simple IMIX).
 * `limits`: the link's, when known; otherwise any MTU's (SIZE_MIN-SIZE_MAX) and buildTemplates narrows it later.
 */
export function parseSizes(size: string | undefined, imix: string | boolean | undefined, limits?: SizeLimits): SizeSpec {
  const lo = limits?.min ?? SIZE_MIN;
  const hi = limits?.max ?? SIZE_MAX;
  const num = (x: string) => {
    const t = x.trim();
    if (!/^\d+$/.test(t)) throw new UsageError(`bad --size '${size}': expected N, A,B,C or LO-HI (frame bytes without FCS, e.g. 60, 64,576,1514 or 60-1514)`);
    const n = Number(t);
    if (n < lo || n > hi) {
      throw new UsageError(`bad --size '${size}': frame size ${t} is out of range: expected ${lo}-${hi} bytes without FCS ` +
        (limits ? `on ${limits.why}` : "(the link's MTU narrows it further)"));
    }
    return n;
  };
  if (imix !== undefined && imix !== false) {
    if (imix === true) {
      if (size !== undefined && size.includes(',')) throw new UsageError('--imix without weights uses the simple IMIX sizes; give weights (--imix 7,4,1) to weight your --size list');
      return { kind: 'imix', ...SIMPLE_IMIX };
    }
    const weights = imix.split(',').map((w) => {
      const t = w.trim();
      if (!/^\d+$/.test(t) || Number(t) > 1000000) throw new UsageError(`bad --imix '${imix}': expected weights like 7,4,1 (integers, one per --size entry)`);
      return Number(t);
    });
    const sizes = size === undefined ? SIMPLE_IMIX.sizes : size.split(',').map(num);
    if (sizes.length !== weights.length) throw new UsageError(`--imix has ${weights.length} weights but --size has ${sizes.length} sizes: give one weight per size`);
    if (weights.every((w) => w === 0)) throw new UsageError(`bad --imix '${imix}': at least one weight must be > 0`);
    return { kind: 'imix', sizes, weights };
  }
  if (size === undefined) return { kind: 'fixed', sizes: [60] };
  if (size.includes(',')) return { kind: 'cycle', sizes: size.split(',').map(num) };
  if (size.includes('-')) {
    const parts = size.split('-');
    if (parts.length !== 2) throw new UsageError(`bad --size '${size}': expected one range LO-HI, like 60-1514`);
    const [a, b] = parts.map(num);
    if (a > b) throw new UsageError(`bad --size '${size}': LO must not exceed HI`);
    if (b - a + 1 > MAX_RANGE_SIZES) throw new UsageError(`bad --size '${size}': ${b - a + 1} sizes in the range, at most ${MAX_RANGE_SIZES} (each is a frame template per flow)`);
    return { kind: 'range', sizes: [a, b] };
  }
  return { kind: 'fixed', sizes: [num(size)] };
}

/** Splits "1795000000.250" into whole seconds and nanoseconds without going through a float. */
export function parseStartAt(s: string): { sec: number; nsec: number } {
  const m = /^\s*(\d{1,12})(?:\.(\d{1,9}))?\s*$/.exec(s);
  if (!m) throw new UsageError(`bad --start-at '${s}': expected a Unix time in seconds like 1795000000.250 (date +%s.%N)`);
  return { sec: Number(m[1]), nsec: Number((m[2] ?? '').padEnd(9, '0')) };
}

export function parseLinkDownPolicy(s: string | undefined): LinkDownPolicy {
  if (s === undefined || s === 'continue' || s === 'stop') return s ?? 'continue';
  throw new UsageError(`bad --on-link-down '${s}': expected continue (count frames due while the link is down as not sent, resume when it is back) or stop (end the run, exit 1)`);
}
