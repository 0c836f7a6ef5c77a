import dgram from 'node:dgram';

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

/** A 32-byte pktgen payload stamped with the wall clock now (ms resolution), as a sender would. */
export function stampedPktgen(seq: number): Buffer {
  const now = Date.now();
  return pktgenPayload(seq, Math.floor(now / 1000), (now % 1000) * 1000, 32);
}

/** A UDP port free on 127.0.0.1 right now (bound and released). */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
  const port = s.address().port;
  await new Promise<void>((res) => s.close(() => res()));
  return port;
}
