/**
 * The C plan walker (the addon's groupWriter) and PlanWriter (the TypeScript one) over the same templates and plan,
 * each with its own group buffers, for tests that hold one to the other byte for byte.
 */
import assert from 'node:assert/strict';
import { groupWriter, planFor, PlanWriter, type GroupWriter } from '../../src/tx/plan.js';
import type { Templates } from '../../src/tx/templates.js';

export interface WriterPair {
  c: GroupWriter;
  js: GroupWriter;
  /** [C's, PlanWriter's]: a group of up to 64 frames of up to 1518 bytes, their offsets and lengths. */
  bufs: [Buffer, Buffer];
  offs: [Uint32Array, Uint32Array];
  lens: [Uint32Array, Uint32Array];
  /** Both write frames pos..pos+m-1 stamped sec.usec: the same byte count and the same bytes (asserted); the count. */
  fill: (pos: number, m: number, sec: number, usec: number, g: number) => number;
}

export function writerPair(t: Templates): WriterPair {
  const plan = planFor(t);
  const c = groupWriter(t, plan, 'native');
  const js = groupWriter(t, plan, 'js');
  assert.ok(!(c instanceof PlanWriter) && js instanceof PlanWriter);
  const bufs: [Buffer, Buffer] = [Buffer.alloc(64 * 1518), Buffer.alloc(64 * 1518)];
  const offs: [Uint32Array, Uint32Array] = [new Uint32Array(64), new Uint32Array(64)];
  const lens: [Uint32Array, Uint32Array] = [new Uint32Array(64), new Uint32Array(64)];
  return {
    c, js, bufs, offs, lens,
    fill: (pos, m, sec, usec, g) => {
      const bytes: number[] = [c, js].map((w, k) => w.fill(bufs[k], offs[k], lens[k], pos, m, sec, usec));
      assert.equal(bytes[0], bytes[1]);
      if (!bufs[0].subarray(0, bytes[0]).equals(bufs[1].subarray(0, bytes[1]))) assert.fail(`group ${g} differs`);
      return bytes[0];
    },
  };
}
