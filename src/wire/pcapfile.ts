import { need, WireError } from './error.js';

/**
 * Classic libpcap file format (not pcapng): 24-byte global header, then per packet a 16-byte record header
 * (ts_sec, ts_usec, incl_len, orig_len) and the bytes. Written little-endian with magic 0xa1b2c3d4 (µs timestamps);
 * read in either byte order.
 */
export const PCAP_MAGIC = 0xa1b2c3d4;
export const PCAP_GLOBAL_LEN = 24;
export const PCAP_RECORD_LEN = 16;
export const LINKTYPE_ETHERNET = 1;

export function emitPcapGlobalHeader(snaplen = 262144, linktype = LINKTYPE_ETHERNET): Buffer {
  const b = Buffer.alloc(PCAP_GLOBAL_LEN);
  b.writeUInt32LE(PCAP_MAGIC, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeInt32LE(0, 8); // thiszone
  b.writeUInt32LE(0, 12); // sigfigs
  b.writeUInt32LE(snaplen, 16);
  b.writeUInt32LE(linktype, 20);
  return b;
}

export function emitPcapRecordHeader(tsSec: number, tsUsec: number, inclLen: number, origLen: number, out = Buffer.alloc(PCAP_RECORD_LEN)): Buffer {
  out.writeUInt32LE(tsSec >>> 0, 0);
  out.writeUInt32LE(tsUsec >>> 0, 4);
  out.writeUInt32LE(inclLen, 8);
  out.writeUInt32LE(origLen, 12);
  return out;
}

export interface PcapRecord {
  tsSec: number;
  tsUsec: number;
  origLen: number;
  data: Buffer;
}

export function parsePcap(buf: Buffer): { linktype: number; snaplen: number; records: PcapRecord[] } {
  need(buf, 0, PCAP_GLOBAL_LEN, 'pcap global header');
  let le: boolean;
  if (buf.readUInt32LE(0) === PCAP_MAGIC) le = true;
  else if (buf.readUInt32BE(0) === PCAP_MAGIC) le = false;
  else throw new WireError(`pcap: bad magic 0x${buf.readUInt32LE(0).toString(16)} (pcapng and ns-resolution files are not read)`);
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const records: PcapRecord[] = [];
  let p = PCAP_GLOBAL_LEN;
  while (p < buf.length) {
    need(buf, p, PCAP_RECORD_LEN, 'pcap record header');
    const incl = u32(p + 8);
    need(buf, p + PCAP_RECORD_LEN, incl, 'pcap record data');
    records.push({ tsSec: u32(p), tsUsec: u32(p + 4), origLen: u32(p + 12), data: buf.subarray(p + 16, p + 16 + incl) });
    p += PCAP_RECORD_LEN + incl;
  }
  return { linktype: u32(20), snaplen: u32(16), records };
}
