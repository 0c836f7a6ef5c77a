/**
 * What a receive engine (native/src/rx.cc) hands JavaScript: one batch of pktgen test datagrams as columns, never a
 * call per datagram. Record i is column[i] for i < n; the columns may be longer than n.
 */
export interface PktgenBatch {
  /** Records in this batch. */
  n: number;
  /** Datagrams in this batch on the port without the pktgen header (not ours: counted, not delivered). */
  nonPktgen: number;
  /**
   * 4 or 6: which address columns hold record i's addresses. The engines always hand over af, srcIp6 and dstIp6; a
   * batch without them (one built by hand, IPv4 only) is read as all af 4.
   */
  af?: Uint8Array;
  /** af 4: IPv4 addresses as u32 (host order of the numbers, 10.0.0.1 = 0x0a000001); 0 for af 6. dstIp 0: unknown. */
  srcIp: Uint32Array;
  dstIp: Uint32Array;
  /**
   * af 6: record i's IPv6 addresses at bytes [16 i, 16 i + 16) (network order); zero for af 4 (an IPv4 client of a
   * dual-stack socket is af 4, its v4-mapped address unmapped). dstIp6 all zero: unknown.
   */
  srcIp6?: Uint8Array;
  dstIp6?: Uint8Array;
  srcPort: Uint16Array;
  dstPort: Uint16Array;
  /** The pktgen header's 32-bit seq. */
  seq: Uint32Array;
  /** UDP payload bytes. */
  len: Uint32Array;
  /**
   * Receive time in ns after the engine's epoch (an integer; exact for 104 days). Differences are inter-arrival
   * times on the clock the engine reports (kernel, hardware or user).
   */
  rxNs: Float64Array;
  /**
   * Receive time (CLOCK_REALTIME) minus the sender's tv_sec/tv_usec, ns; NaN when the sender left both 0. Meaningful
   * only when the sender's clock is synced with ours (namespaces of one host, PTP).
   */
  latencyNs: Float64Array;
}
