/**
 * Interop: Wireshark's own pktgen dissector (epan/dissectors/packet-pktgen.c, an independent implementation) must
 * read our header. Frames go to a pcap file in a temp dir and are decoded by tshark; no network involved.
 * Skipped when tshark is not installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PKTGEN_HDR_LEN, writePktgenHeader } from '../../src/proto/pktgen.js';
import { UdpFramer } from '../../src/wire/udpframe.js';
import { emitPcapGlobalHeader, emitPcapRecordHeader } from '../../src/wire/pcapfile.js';

const hasTshark = spawnSync('tshark', ['-v']).status === 0;

test('tshark --enable-heuristic pktgen_udp decodes magic, seq, tv_sec and tv_usec of our header', { skip: !hasTshark && 'tshark not installed' }, () => {
  const framer = new UdpFramer({
    srcMac: Buffer.from('020000000001', 'hex'), dstMac: Buffer.from('020000000002', 'hex'),
    srcIp: 0x0a000001, dstIp: 0x0a000002, srcPort: 9, dstPort: 9,
  }, 64);
  const cases = [
    { seq: 1, tvSec: 1795000000, tvUsec: 250000 },
    { seq: 2, tvSec: 1795000000, tvUsec: 999999 },
    { seq: 0xfffffffe, tvSec: 0x7fffffff, tvUsec: 1 },
  ];
  const parts: Buffer[] = [emitPcapGlobalHeader()];
  const payload = Buffer.alloc(PKTGEN_HDR_LEN + 2);
  cases.forEach((c, i) => {
    writePktgenHeader(payload, 0, c.seq, c.tvSec, c.tvUsec);
    const frame = Buffer.from(framer.build(payload, i + 1));
    parts.push(emitPcapRecordHeader(1795000000, i, frame.length, frame.length), frame);
  });
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-pktgen-'));
  try {
    const file = join(dir, 'pktgen.pcap');
    writeFileSync(file, Buffer.concat(parts));
    const r = spawnSync('tshark', ['-r', file, '-n', '--enable-heuristic', 'pktgen_udp', '-T', 'fields', '-E', 'separator=,',
      '-e', 'pktgen.magic', '-e', 'pktgen.seqnum', '-e', 'pktgen.tvsec', '-e', 'pktgen.tvusec']);
    assert.equal(r.status, 0, r.stderr.toString());
    const rows = r.stdout.toString().trim().split('\n').map((l) => l.split(','));
    assert.deepEqual(rows, cases.map((c) => ['0xbe9be955', String(c.seq), String(c.tvSec), String(c.tvUsec)]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
