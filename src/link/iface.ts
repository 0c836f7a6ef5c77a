import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { UsageError } from '../errors.js';
import { parseIpv4 } from '../wire/addr.js';
import { parseIpv6Addr } from '../wire/ipv6.js';
import { parseMac } from '../wire/mac.js';

export interface IfaceInfo {
  name: string;
  index: number;
  mac: Buffer;
  mtu: number;
  up: boolean;
  /** IPv4 addresses configured on the interface in this network namespace (may be none: netdump's case). */
  ipv4: { addr: number; prefix: number }[];
  /**
   * IPv6 addresses (16 bytes, link-local ones included) in the order the kernel lists them (getifaddrs); a senders'
   * default source is picked from these as netpoll_setup does.
   */
  ipv6: { addr: Buffer; prefix: number }[];
}

const IFNAME_RE = /^[A-Za-z0-9_.:@-]{1,15}$/;

export function listInterfaces(): string[] {
  try {
    return readdirSync('/sys/class/net').sort();
  } catch {
    return Object.keys(networkInterfaces()).sort();
  }
}

/** What rawpoll needs to know about a link, read from sysfs (per network namespace under `ip netns exec`). */
export function ifaceInfo(name: string): IfaceInfo {
  const dir = `/sys/class/net/${name}`;
  if (!IFNAME_RE.test(name) || name.includes('..') || !existsSync(dir)) {
    throw new UsageError(`no interface '${name}' here (available: ${listInterfaces().join(', ') || 'none'})`);
  }
  const read = (f: string) => readFileSync(`${dir}/${f}`, 'utf8').trim();
  const flags = parseInt(read('flags'), 16);
  const ipv4 = (networkInterfaces()[name] ?? [])
    .filter((a) => a.family === 'IPv4')
    .map((a) => ({ addr: parseIpv4(a.address, 'interface address'), prefix: cidrPrefix(a.cidr, 32) }));
  const ipv6 = ifaceIpv6Addrs(name);
  let mac: Buffer;
  try {
    mac = parseMac(read('address'));
  } catch {
    mac = Buffer.alloc(6); // links without an Ethernet address (e.g. tun) still report one of another length
  }
  return { name, index: Number(read('ifindex')), mac, mtu: Number(read('mtu')), up: (flags & 1) === 1, ipv4, ipv6 };
}

function cidrPrefix(cidr: string | null, whole: number): number {
  const m = cidr ? /\/(\d+)$/.exec(cidr) : null;
  return m ? Number(m[1]) : whole;
}

/** An IPv6 address configured on an interface in this namespace (os.networkInterfaces, i.e. getifaddrs). */
export interface Ipv6IfAddr {
  addr: Buffer;
  prefix: number;
}

/** The IPv6 addresses of `name`, link-local ones included (their zone dropped: it is this interface), in the kernel's order. */
export function ifaceIpv6Addrs(name: string): Ipv6IfAddr[] {
  return (networkInterfaces()[name] ?? [])
    .filter((a) => a.family === 'IPv6')
    .map((a) => ({ addr: parseIpv6Addr(a.address.replace(/%.*$/, ''), 'interface address'), prefix: cidrPrefix(a.cidr, 128) }));
}

/** True when some interface in this namespace has the IPv6 address: then the host's stack answers for it. */
export function hostOwnsIpv6Address(ip: Buffer): boolean {
  for (const name of Object.keys(networkInterfaces())) {
    if (ifaceIpv6Addrs(name).some((a) => a.addr.equals(ip))) return true;
  }
  return false;
}

/** True when some interface in this namespace has the address: then the host's stack owns it. */
export function hostOwnsAddress(ip: number): boolean {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv4' && parseIpv4(a.address, 'address') === ip) return true;
    }
  }
  return false;
}
