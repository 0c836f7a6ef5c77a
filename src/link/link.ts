/**
 * The edge every sender hands its frames to (../shared/STYLE.md: one small `Link` interface). Three implement it:
 * PcapLink (a libpcap handle: pcap_inject, and a filtered receive side), NativeLink (an AF_PACKET socket:
 * sendmmsg batches) and PcapFileWriter (a classic pcap file, for `-w`). A sender written against Link — UdpSender,
 * the blast pcap engine — runs on any of them, or on a test's recording link, without knowing which it has.
 *
 * What each link can do beyond this (PcapLink's watch, stats and filter; NativeLink's C blast loop; the file's
 * abort) stays on its class.
 */
import type { RuntimeError } from '../errors.js';

/**
 * Called for every captured frame. `frame` is a view into the batch buffer, valid only during the call; the
 * timestamp is libpcap's (the kernel's, for Linux): seconds and the fraction in ns (`link.nanosecond`) or µs.
 */
export type FrameHandler = (frame: Buffer, tsSec: number, tsFrac: number) => void;

/** What Link.sendBatch throws: send()'s error for the frame that failed, and how many frames before it went out. */
export type BatchSendError = RuntimeError & { sent: number };

/** Frames a sendBatch sent before it threw `e` (0 for an error that does not say: nothing is known to have gone out). */
export function sentBeforeError(e: unknown): number {
  const s = (e as { sent?: unknown } | null)?.sent;
  return typeof s === 'number' ? s : 0;
}

export interface Link {
  /**
   * One whole Ethernet frame (without FCS), sent before send() returns: the caller may reuse the buffer at once.
   * A full queue is waited out, never dropped silently. A link that is down throws LinkDownError, one whose
   * interface is gone LinkGoneError (the caller decides whether to queue, count or stop); any other failure a
   * RuntimeError.
   */
  send(frame: Uint8Array): void;
  /**
   * send() for frames 0..n-1 of one buffer (frame i = buf[offsets[i], offsets[i] + lengths[i])), in order, in as
   * few calls into the kernel as the link can. Returns n. A failure throws what send() would have thrown for the
   * frame that failed, with `sent` (a BatchSendError): frames 0..sent-1 went out, frames sent..n-1 did not.
   */
  sendBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, n: number): number;
  /** Times a send met a full queue and waited (EAGAIN/ENOBUFS), if the link counts them. */
  readonly sendRetries?: number;
  /**
   * Frames received on the link (only links with a receive side have it: PcapLink). Returns the function that
   * removes the handler.
   */
  onFrame?(h: FrameHandler): () => void;
  /** Flushes and releases what the link holds. Idempotent. */
  close(): void;
}
