/**
 * Hand-built netoops datagrams and a scratch OopsCollector for the receiver's unit tests. The bytes are written from
 * PROTOCOLS.md §3 here, not by the production encoder, so a test can catch the codec and the receiver agreeing on a
 * mistake.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OopsCollector, type OopsEvent } from '../../src/rx/oopscollect.js';

/**
 * A dump as netoops cuts it: v3 without the user blob (data at 88), packet_no k carrying chunk count-1-k (the newest
 * first), the last chunk zero-padded.
 */
export function oopsDatagrams(log: Buffer, dumpId: number, bootId: number, kernel = ''): Buffer[] {
  const count = Math.ceil(log.length / 1024);
  const out: Buffer[] = [];
  for (let k = 0; k < count; k++) {
    const i = count - 1 - k;
    const b = Buffer.alloc(88 + 1024);
    b.writeUInt16LE(3, 0); b.writeUInt16LE(dumpId, 2); b.writeUInt16LE(88, 4); b.writeUInt16LE(88, 8);
    b.writeUInt16LE(1, 10); b.writeUInt32LE(count, 12); b.writeUInt32LE(k, 16); b.writeUInt32LE(bootId, 20);
    b.write(kernel, 24, 'latin1');
    log.copy(b, 88, i * 1024, Math.min(log.length, i * 1024 + 1024));
    out.push(b);
  }
  return out;
}

/** An OopsCollector writing into a fresh temporary directory, its events collected; cleanup() removes the directory. */
export function oopsCollector(o: Partial<ConstructorParameters<typeof OopsCollector>[0]> = {}, idleMs = 60_000) {
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-oops-'));
  const events: OopsEvent[] = [];
  const c = new OopsCollector({ dir, onEvent: (e) => events.push(e), idleMs, ...o });
  return { dir, events, c, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
