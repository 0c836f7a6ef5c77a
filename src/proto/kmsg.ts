/**
 * The /dev/kmsg record format (Documentation/ABI/testing/dev-kmsg; printk's devkmsg_read), no I/O:
 * `prio,seq,usec,flag[,…];text\n[ KEY=value\n…]`. Text is escaped as extended netconsole escapes it (the kernel
 * hands netconsole the same bytes), so both the netconsole sender (tx/sources.ts) and the netoops report's log
 * (host/hostinfo.ts) read records with this one parser.
 */
import { unescapeExtText } from './netconsole.js';

export interface KmsgRecord {
  /** The record exactly as /dev/kmsg gave it: `prio,seq,usec,flag[,…];text\n[ KEY=value\n…]`. */
  raw: Buffer;
  prio: number; level: number; facility: number; seq: number; usec: number; cont: boolean;
  /** Unescaped message text (no newline). */
  text: Buffer;
}

/** Parse one /dev/kmsg record; null when it is not one. */
export function parseKmsgRecord(raw: Buffer): KmsgRecord | null {
  const semi = raw.indexOf(0x3b);
  if (semi < 0) return null;
  const f = raw.toString('latin1', 0, semi).split(',');
  if (f.length < 4 || !/^\d+$/.test(f[0]) || !/^\d+$/.test(f[1]) || !/^\d+$/.test(f[2])) return null;
  const nl = raw.indexOf(0x0a, semi + 1);
  const escaped = raw.subarray(semi + 1, nl < 0 ? raw.length : nl);
  const prio = Number(f[0]);
  return {
    raw, prio, level: prio & 7, facility: prio >> 3, seq: Number(f[1]), usec: Number(f[2]), cont: f[3].startsWith('c'),
    text: unescapeExtText(escaped),
  };
}
