/**
 * A pktgen test payload built by hand from PROTOCOLS.md §5 (magic 0xbe9be955, seq, tv_sec, tv_usec, all u32
 * big-endian), not with the codec under test; zero-padded to `len` bytes.
 */
export function pktgenPayload(seq: number, tvSec = 0, tvUsec = 0, len = 18): Buffer {
  const b = Buffer.alloc(len);
  b.writeUInt32BE(0xbe9be955, 0);
  b.writeUInt32BE(seq >>> 0, 4);
  b.writeUInt32BE(tvSec, 8);
  b.writeUInt32BE(tvUsec, 12);
  return b;
}
