import { sameSubnet } from '../wire/addr.js';
import { isIpv6LinkLocal } from '../wire/ipv6.js';
import { sameSubnetAny } from '../wire/endpoint.js';

/** The address whose MAC the frame goes to: an IPv4 u32, or (family 6) an IPv6 address's 16 bytes. */
export type NextHop4 = { family?: 4; ip: number; via: 'direct' | 'gateway' };
export type NextHop6 = { family: 6; ip6: Buffer; via: 'direct' | 'gateway' };
export type NextHop = NextHop4 | NextHop6;

/**
 * rawpoll has no routing table: the target is on-link unless a gateway is given and the target lies outside the
 * source's subnet (the prefix comes from --from IP/N or the interface's own address). With a gateway but no known
 * prefix, the gateway is used — the user asked for it.
 */
export function chooseNextHop(target: number, gateway: number | undefined, src: { ip: number; prefix?: number }): NextHop4 {
  if (gateway === undefined) return { ip: target, via: 'direct' };
  if (src.prefix !== undefined && sameSubnet(target, src.ip, src.prefix)) return { ip: target, via: 'direct' };
  return { ip: gateway, via: 'gateway' };
}

/**
 * The same choice over IPv6, whose MAC then comes from NDP: a link-local target is always on-link (fe80::/10 is never
 * routed, RFC 4291 §2.5.6), otherwise as chooseNextHop with the source's prefix (a /64 as a rule).
 */
export function chooseNextHop6(target: Buffer, gateway: Buffer | undefined, src: { ip6: Buffer; prefix?: number }): NextHop6 {
  if (gateway === undefined || isIpv6LinkLocal(target)) return { family: 6, ip6: target, via: 'direct' };
  if (src.prefix !== undefined && sameSubnetAny({ family: 6, ip6: target }, { family: 6, ip6: src.ip6 }, src.prefix)) {
    return { family: 6, ip6: target, via: 'direct' };
  }
  return { family: 6, ip6: gateway, via: 'gateway' };
}

/**
 * The IPv6 source when none is given, as netpoll_setup picks it: for a link-local target the interface's link-local
 * address, else a global one whose prefix holds the target, else the first global one, else the link-local one (it
 * still reaches an on-link peer).
 */
export function chooseSource6(addrs: { addr: Buffer; prefix: number }[], target: Buffer): { ip6: Buffer; prefix: number } | undefined {
  const ll = addrs.filter((a) => isIpv6LinkLocal(a.addr));
  const other = addrs.filter((a) => !isIpv6LinkLocal(a.addr));
  const pick = isIpv6LinkLocal(target)
    ? ll[0] ?? other[0]
    : other.find((a) => sameSubnetAny({ family: 6, ip6: a.addr }, { family: 6, ip6: target }, a.prefix)) ?? other[0] ?? ll[0];
  return pick ? { ip6: pick.addr, prefix: pick.prefix } : undefined;
}
