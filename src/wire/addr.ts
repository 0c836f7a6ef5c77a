import ipaddr from 'ipaddr.js';
import { WireError } from './error.js';

/**
 * Text that is not the address it should be (an IPv4 address, a port, a prefix). The message names the bad value
 * and what would be valid; the CLI turns it into exit code 2 (bad usage), as it does every codec's error.
 */
export class AddressError extends WireError {
  constructor(message: string) {
    super(message);
    this.name = 'AddressError';
  }
}

/** IPv4 addresses travel through rawpoll as unsigned 32-bit numbers (host order): cheap to compare, mask and write. */
export function parseIpv4(s: string, what: string): number {
  const t = String(s).trim();
  if (!ipaddr.IPv4.isValidFourPartDecimal(t)) {
    throw new AddressError(`bad ${what} '${s}': expected a dotted-quad IPv4 address like 10.0.0.2`);
  }
  const b = ipaddr.IPv4.parse(t).toByteArray();
  return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
}

export function formatIpv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function parsePort(s: string | number, what: string): number {
  const t = String(s).trim();
  const n = /^\d{1,5}$/.test(t) ? Number(t) : NaN;
  if (!(n >= 0 && n <= 65535)) {
    throw new AddressError(`bad ${what} '${s}': expected a UDP port number 0-65535`);
  }
  return n;
}

/** "IP[:PORT]" → {ip, port}; a missing port takes defaultPort, or is an error when there is none. */
export function parseEndpoint(s: string, what: string, defaultPort?: number): { ip: number; port: number } {
  const t = String(s).trim();
  const i = t.lastIndexOf(':');
  if (i < 0) {
    if (defaultPort === undefined) {
      throw new AddressError(`bad ${what} '${s}': expected IP:PORT like 10.0.0.2:9000`);
    }
    return { ip: parseIpv4(t, what), port: defaultPort };
  }
  return { ip: parseIpv4(t.slice(0, i), what), port: parsePort(t.slice(i + 1), `${what} port`) };
}

/** "IP[/PREFIX][:PORT]" for --from: the prefix (optional) tells rawpoll which targets are on-link. */
export function parseSource(s: string, what: string): { ip: number; port?: number; prefix?: number } {
  const m = /^([^/:]+)(?:\/(\d{1,2}))?(?::(.*))?$/.exec(String(s).trim());
  if (!m) throw new AddressError(`bad ${what} '${s}': expected IP[/PREFIX][:PORT] like 10.0.0.7:5000 or 10.0.0.7/24`);
  const ip = parseIpv4(m[1], what);
  let prefix: number | undefined;
  if (m[2] !== undefined) {
    prefix = Number(m[2]);
    if (prefix > 32) throw new AddressError(`bad ${what} prefix '/${m[2]}': expected 0-32`);
  }
  const port = m[3] !== undefined ? parsePort(m[3], `${what} port`) : undefined;
  return { ip, port, prefix };
}

export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function sameSubnet(a: number, b: number, prefix: number): boolean {
  const m = prefixMask(prefix);
  return ((a & m) >>> 0) === ((b & m) >>> 0);
}
