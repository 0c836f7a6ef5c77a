/**
 * Addresses of either family as the command line writes them (RFC 3986 §3.2.2 / RFC 5952 §6): IPv4 `10.0.0.2:9000`,
 * IPv6 in brackets when a port follows `[fd00::2]:9000`, bare where none does (`fd00::2`, `10.0.0.2`). IPv4 stays the
 * u32 the IPv4 code uses; IPv6 is its 16 bytes. A link-local IPv6 address may carry its zone (`fe80::1%eth1`); the
 * caller that knows the interface checks it.
 */
import { AddressError, parseIpv4, parsePort } from './addr.js';
import { formatIpv6Addr, isIpv6LinkLocal, parseIpv6Addr, splitIpv6Zone } from './ipv6.js';

export type IpFamily = 4 | 6;

export type IpAddress = { family: 4; ip: number } | { family: 6; ip6: Buffer; zone?: string };

export type Endpoint = IpAddress & { port: number };

export type Source = IpAddress & { port?: number; prefix?: number };

const IPV4_LIKE = /^\d{1,3}(\.\d{1,3}){3}$/;

/** An address alone, IPv4 or IPv6 (a zone allowed on IPv6). `what` names the option in errors. */
export function parseIpAddress(s: string, what: string): IpAddress {
  const t = String(s).trim();
  if (t.startsWith('[') && t.endsWith(']')) return parseIpAddress(t.slice(1, -1), what);
  if (IPV4_LIKE.test(t)) return { family: 4, ip: parseIpv4(t, what) };
  if (!t.includes(':')) {
    throw new AddressError(`bad ${what} '${s}': expected an IPv4 address like 10.0.0.2 or an IPv6 address like fd00::2`);
  }
  const { addr, zone } = splitIpv6Zone(t);
  const ip6 = parseIpv6Addr(addr, what);
  if (zone !== undefined) {
    if (!isIpv6LinkLocal(ip6)) throw new AddressError(`bad ${what} '${s}': a zone (%${zone}) belongs to a link-local address (fe80::/10) only`);
    if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(zone)) throw new AddressError(`bad ${what} '${s}': '${zone}' is not an interface name`);
    return { family: 6, ip6, zone };
  }
  return { family: 6, ip6 };
}

/**
 * Where the address ends and the port begins: "[…]" or "[…]:PORT"; two colons or more without brackets are an
 * IPv6 address with no port; else "HOST[:PORT]".
 */
function splitPort(s: string, t: string, what: string, example: string): { host: string; port?: string; bracketed: boolean } {
  if (t.startsWith('[')) {
    const close = t.indexOf(']');
    if (close < 0) throw new AddressError(`bad ${what} '${s}': '[' without ']': expected ${example}`);
    const rest = t.slice(close + 1);
    if (rest !== '' && !rest.startsWith(':')) throw new AddressError(`bad ${what} '${s}': expected ':PORT' after ']': ${example}`);
    return { host: t.slice(1, close), port: rest === '' ? undefined : rest.slice(1), bracketed: true };
  }
  if ((t.match(/:/g) ?? []).length >= 2) return { host: t, bracketed: false };
  const i = t.indexOf(':');
  return i < 0 ? { host: t, bracketed: false } : { host: t.slice(0, i), port: t.slice(i + 1), bracketed: false };
}

/**
 * "IPv4:PORT", "[IPv6]:PORT", or the address alone when `defaultPort` is given. A bare IPv6 address is never read
 * as address:port (`fd00::2:9000` is an address): the brackets say where the address ends.
 */
export function parseEndpointAny(s: string, what: string, defaultPort?: number): Endpoint {
  const t = String(s).trim();
  const example = 'IP:PORT like 10.0.0.2:9000 or [fd00::2]:9000';
  const { host, port, bracketed } = splitPort(s, t, what, example);
  if (bracketed && !host.includes(':')) throw new AddressError(`bad ${what} '${s}': brackets are for IPv6 addresses; write an IPv4 one as 10.0.0.2:9000`);
  const a = parseIpAddress(host, what);
  if (port === undefined) {
    if (defaultPort === undefined) {
      throw new AddressError(a.family === 6 && !t.startsWith('[')
        ? `bad ${what} '${s}': an IPv6 address with a port is written in brackets, e.g. [${host}]:9000`
        : `bad ${what} '${s}': expected ${example}`);
    }
    return { ...a, port: defaultPort };
  }
  return { ...a, port: parsePort(port, `${what} port`) };
}

/**
 * --from: "IPv4[/PREFIX][:PORT]", "[IPv6[/PREFIX]]:PORT", "IPv6[/PREFIX]" (or in brackets without a port). The
 * prefix tells rawpoll which targets are on-link: 0-32 for IPv4, 0-128 for IPv6.
 */
export function parseSourceAny(s: string, what: string): Source {
  const t = String(s).trim();
  const example = 'IP[/PREFIX][:PORT] like 10.0.0.7/24:5000, [fd00::7/64]:5000 or fd00::7/64';
  const { host: body, port } = splitPort(s, t, what, example);
  const slash = body.indexOf('/');
  const addr = slash < 0 ? body : body.slice(0, slash);
  const a = parseIpAddress(addr, what);
  let prefix: number | undefined;
  if (slash >= 0) {
    const p = body.slice(slash + 1);
    const max = a.family === 4 ? 32 : 128;
    prefix = /^\d{1,3}$/.test(p) ? Number(p) : NaN;
    if (!(prefix >= 0 && prefix <= max)) throw new AddressError(`bad ${what} prefix '/${p}': expected 0-${max} for an IPv${a.family} address`);
  }
  return { ...a, ...(port !== undefined ? { port: parsePort(port, `${what} port`) } : {}), ...(prefix !== undefined ? { prefix } : {}) };
}

/** The text form: "10.0.0.2", "fd00::2", "fe80::1%eth1". */
export function formatIpAddress(a: IpAddress): string {
  if (a.family === 4) return `${(a.ip >>> 24) & 255}.${(a.ip >>> 16) & 255}.${(a.ip >>> 8) & 255}.${a.ip & 255}`;
  return formatIpv6Addr(a.ip6) + (a.zone !== undefined ? `%${a.zone}` : '');
}

/** "10.0.0.2:9000", "[fd00::2]:9000" (RFC 5952 §6). */
export function formatEndpoint(e: Endpoint): string {
  return e.family === 4 ? `${formatIpAddress(e)}:${e.port}` : `[${formatIpAddress(e)}]:${e.port}`;
}

/** Whether a and b share their first `prefix` bits (same family). */
export function sameSubnetAny(a: IpAddress, b: IpAddress, prefix: number): boolean {
  if (a.family !== b.family) return false;
  const x = a.family === 4 ? u32Bytes(a.ip) : a.ip6;
  const y = b.family === 4 ? u32Bytes(b.ip) : (b as { ip6: Buffer }).ip6;
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (x[i] !== y[i]) return false;
  const bits = prefix & 7;
  if (bits === 0) return true;
  const m = (0xff << (8 - bits)) & 0xff;
  return (x[whole] & m) === (y[whole] & m);
}

function u32Bytes(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}
