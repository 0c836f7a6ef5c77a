/**
 * `rawpoll send -c N` against a naive `pcap_inject` loop (our binding, one JS call per frame), alternating, on a veth lab this creates and removes.
 * Frames are 60 bytes and go to a MAC nobody owns, so the peer kernel counts them (rx_packets) and drops them at
 * once: the figure is the sender's. Run alone: node dist/scripts/bench-send.js [COUNT] [ROUNDS]
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nsRun, rawpoll, ROOT, rxPackets, twoHosts } from '../test/helpers/lab.js';

export interface SendBenchRow {
  name: string;
  pps: number[];
  delivered: number[];
}

export function benchSend(count = 100000, rounds = 3): SendBenchRow[] {
  const h = twoHosts();
  const sink = '02:00:00:00:00:99';
  const rows: SendBenchRow[] = [
    { name: 'rawpoll send -c (pcap engine)', pps: [], delivered: [] },
    { name: 'naive pcap_inject loop', pps: [], delivered: [] },
  ];
  try {
    for (let r = 0; r < rounds; r++) {
      let before = rxPackets(h.b, h.ifB);
      const s = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--dst-mac', sink, '--data', 'x', '-c', String(count), '--json']);
      if (s.code !== 0) throw new Error(`rawpoll send failed: ${s.stderr}`);
      rows[0].pps.push(JSON.parse(s.stdout).pps);
      rows[0].delivered.push(rxPackets(h.b, h.ifB) - before);

      before = rxPackets(h.b, h.ifB);
      const n = nsRun(h.a, [process.execPath, join(ROOT, 'dist', 'scripts', 'naive-pcap-loop.js'), h.ifA, sink, String(count)]);
      if (n.code !== 0) throw new Error(`naive loop failed: ${n.stderr}`);
      rows[1].pps.push(JSON.parse(n.stdout).pps);
      rows[1].delivered.push(rxPackets(h.b, h.ifB) - before);
    }
  } finally {
    h.lab.destroy();
  }
  return rows;
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

export function printSendBench(rows: SendBenchRow[], count: number): void {
  const base = median(rows[1].pps);
  console.log(`send: ${count} x 60-byte frames per run, ${rows[0].pps.length} alternating rounds, median pps (ratio to the naive pcap_inject loop)`);
  for (const r of rows) {
    console.log(`  ${r.name.padEnd(32)} ${String(median(r.pps)).padStart(8)} pps  ${(median(r.pps) / base).toFixed(2)}x  runs: ${r.pps.join(', ')}  delivered: ${r.delivered.join(', ')}`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const count = Number(process.argv[2] ?? 100000);
  const rounds = Number(process.argv[3] ?? 3);
  printSendBench(benchSend(count, rounds), count);
}
