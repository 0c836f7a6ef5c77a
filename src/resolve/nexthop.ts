import { sameSubnet } from '../wire/addr.js';

export interface NextHop {
  /** The address whose MAC the frame goes to. */
  ip: number;
  via: 'direct' | 'gateway';
}

/**
 * rawpoll has no routing table: the target is on-link unless a gateway is given and the target lies outside the
 * source's subnet (the prefix comes from --from IP/N or the interface's own address). With a gateway but no known
 * prefix, the gateway is used — the user asked for it.
 */
export function chooseNextHop(target: number, gateway: number | undefined, src: { ip: number; prefix?: number }): NextHop {
  if (gateway === undefined) return { ip: target, via: 'direct' };
  if (src.prefix !== undefined && sameSubnet(target, src.ip, src.prefix)) return { ip: target, via: 'direct' };
  return { ip: gateway, via: 'gateway' };
}
