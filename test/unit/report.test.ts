import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderHtml, renderSvg, writeReport } from '../../src/exp/report.js';
import { encodeHistogram, initHistograms, newHistogram } from '../../src/rx/histogram.js';
import { RuntimeError, UsageError } from '../../src/errors.js';
import type { Rfc2544Run, Trial } from '../../src/exp/results.js';

// Fixtures: a 1 GbE port in front of a device that forwards at most 900,000 frames/s: 63% of the line at 64 B, all of it
// from 128 B.
const SIZES = [64, 128, 256, 512, 1024, 1280, 1518];
/** Line rate of 1 Gbit/s in frames/s: each frame costs size + FCS 4 + preamble 8 + gap 12 bytes on the wire. */
const lineRate = (size: number): number => Math.floor(1e9 / ((size + 24) * 8));
const mbps = (size: number, pps: number): number => +(pps * (size + 24) * 8 / 1e6).toFixed(1);

function trial(size: number, ratePps: number, lossPct: number, extra: Partial<Trial> = {}): Trial {
  const sent = Math.round(ratePps * 2);
  const received = Math.round(sent * (1 - lossPct / 100));
  return {
    size, ratePps, achievedPps: ratePps, burst: null, sent, received, lossPct: +(100 * (sent - received) / sent).toFixed(4),
    ownDrops: 0, seconds: 2, latencyUs: null, ...extra,
  };
}

function base(test: Rfc2544Run['test']): Rfc2544Run {
  return {
    test, tool: 'rawpoll 0.1.0', startedAt: '2026-03-02T10:15:00.000Z', iface: 'eth1', to: '10.0.9.2:9',
    sizesCountFcs: false, sizes: SIZES, trialSeconds: 2, lossTolerancePct: 0, maxRatePps: lineRate(64),
    resolutionPct: 0.5, repeat: 1, trials: [],
  };
}

const capacity = (size: number): number => Math.min(lineRate(size), 900_000);

function throughputRun(): Rfc2544Run {
  const run = base('throughput');
  for (const size of SIZES) {
    // A short binary search per size: line rate, half of it, then towards the device's capacity.
    for (const f of [1, 0.5, 0.75, 0.625]) {
      const rate = Math.round(lineRate(size) * f);
      run.trials.push(trial(size, rate, rate > capacity(size) ? 100 * (1 - capacity(size) / rate) : 0));
    }
  }
  run.trials[1] = { ...run.trials[1], ownDrops: 12 };
  run.throughput = SIZES.map((size) => {
    const ratePps = Math.min(capacity(size), lineRate(size));
    return { size, ratePps, lineMbps: mbps(size, ratePps), lossPct: 0 };
  });
  return run;
}

function frameLossRun(): Rfc2544Run {
  const run = { ...base('frame-loss'), sizes: [64, 512, 1518] };
  run.frameLoss = [];
  for (const size of run.sizes) {
    for (let pct = 100; pct >= 10; pct -= 10) {
      const ratePps = Math.round(lineRate(size) * pct / 100);
      const lossPct = ratePps > capacity(size) ? +(100 * (1 - capacity(size) / ratePps)).toFixed(3) : 0;
      run.frameLoss.push({ size, offeredPct: pct, ratePps, lossPct });
      run.trials.push(trial(size, ratePps, lossPct));
    }
  }
  return run;
}

/** Latency from a real HdrHistogram: a body around `us` and a tail 10× out, as a store-and-forward switch gives. */
function latencyRun(): Rfc2544Run {
  const run = { ...base('latency'), sizes: [64, 1518] };
  run.latency = run.sizes.map((size, i) => {
    const h = newHistogram(64);
    const us = 4 + size * 8 / 1000; // serialisation at 1 Gbit/s
    let min = Infinity, max = 0, sum = 0;
    for (let k = 0; k < 20_000; k++) {
      const v = (us + (k % 100) / 50 + (k % 1000 === 0 ? 10 * us : 0)) * 1000;
      h.recordValue(v);
      min = Math.min(min, v); max = Math.max(max, v); sum += v;
    }
    const latencyUs = { min: min / 1000, p50: h.getValueAtPercentile(50) / 1000, p99: h.getValueAtPercentile(99) / 1000, max: max / 1000, avg: sum / 20_000 / 1000 };
    const histogram = encodeHistogram(h);
    h.destroy();
    run.trials.push(trial(size, capacity(size), 0, { latencyUs }));
    // The second size as a run from a sink without histograms: the plot falls back to min/p50/p99/max.
    return { size, ratePps: capacity(size), latencyUs, clock: 'kernel (CLOCK_REALTIME, SO_TIMESTAMPNS)', histogram: i === 0 ? histogram : null };
  });
  return run;
}

function backToBackRun(): Rfc2544Run {
  const run = { ...base('back-to-back'), sizes: [64, 512], repeat: 3, maxRatePps: lineRate(64) };
  run.backToBack = [
    { size: 64, frames: [4096, 4160, 4032], meanFrames: 4096, bufferTimeUs: 4096 / 900_000 * 1e6 - 4096 / lineRate(64) * 1e6 },
    { size: 512, frames: [1020, 1000, 1010], meanFrames: 1010, bufferTimeUs: null },
  ];
  for (const b of run.backToBack) {
    for (const f of b.frames) {
      run.trials.push(trial(b.size, run.maxRatePps, 0, { burst: f, sent: f, received: f, seconds: f / run.maxRatePps }));
      run.trials.push(trial(b.size, run.maxRatePps, 1.2, { burst: 2 * f, sent: 2 * f, received: Math.round(2 * f * 0.988), seconds: 2 * f / run.maxRatePps }));
    }
  }
  return run;
}

/**
 * The aria labels of the marks named `name` (vega-lite's mark name becomes the class `<name>_marks` of each group it
 * draws: one for points, one per series for lines). The report writes each label from the data.
 */
function marks(svg: string, name: string): string[] {
  const groups = [...svg.matchAll(new RegExp(`<g class="mark-[a-z]+ role-mark ${name}_marks"[^>]*>(.*?)</g>`, 'g'))];
  assert.ok(groups.length > 0, `no marks named ${name} in the SVG`);
  return groups.flatMap((g) => [...g[1].matchAll(/aria-label="([^"]*)"/g)].map((m) => m[1]));
}

/** Point marks (symbols): their labels and positions (vega writes each as a path translated to its x, y). */
function points(svg: string, name: string): { label: string; x: number; y: number }[] {
  const groups = [...svg.matchAll(new RegExp(`<g class="mark-symbol role-mark ${name}_marks"[^>]*>(.*?)</g>`, 'g'))];
  assert.equal(groups.length, 1, `one point group named ${name}`);
  return [...groups[0][1].matchAll(/<path aria-label="([^"]*)"[^>]*? transform="translate\(([-\d.e]+),([-\d.e]+)\)"/g)]
    .map((m) => ({ label: m[1], x: Number(m[2]), y: Number(m[3]) }));
}

/** Positions are a linear function of the values (the marks were placed by the data, on a linear scale). */
function assertLinear(pos: number[], values: number[]): void {
  assert.equal(pos.length, values.length);
  const i = values.findIndex((v) => v !== values[0]);
  assert.ok(i > 0, 'values all alike');
  const k = (pos[i] - pos[0]) / (values[i] - values[0]);
  values.forEach((v, j) => assert.ok(Math.abs(pos[0] + k * (v - values[0]) - pos[j]) < 0.51, `value ${v} at ${pos[j]}, expected ${pos[0] + k * (v - values[0])}`));
}

/** A light well-formedness check (no XML parser in Node): one <svg> root, every element closed in order. */
function assertBalanced(svg: string): void {
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w:-]*)[^>]*?(\/?)>/g)) {
    if (m[3] === '/') continue;
    if (m[1] === '/') assert.equal(stack.pop(), m[2], `</${m[2]}> closes something else`);
    else stack.push(m[2]);
  }
  assert.deepEqual(stack, []);
  // Text outside tags has no raw < or & that is not an entity.
  for (const t of svg.split(/<[^>]*>/)) assert.doesNotMatch(t, /[<>]|&(?!(amp|lt|gt|quot|#\d+);)/);
}

function assertSubtitles(svg: string, run: Rfc2544Run, plots: number): void {
  // Subtitle lines are <tspan>s (their aria-label repeats them: count the drawn text only).
  const lines = [...svg.matchAll(/<tspan[^>]*>([^<]*)<\/tspan>/g)].map((m) => m[1]);
  const sizes = `frame sizes ${run.sizes.join(', ')} bytes (without the 4-byte FCS)`;
  assert.equal(lines.filter((l) => l.endsWith(sizes)).length, plots, 'each plot names the test and sizes');
  assert.equal(lines.filter((l) => l.startsWith('sink clock: ') &&
    l.endsWith(`trials of ${run.trialSeconds} s · loss tolerance ${run.lossTolerancePct}% (no-drop rate)`)).length, plots);
}

before(async () => {
  await initHistograms();
});

/** RAWPOLL_REPORT_DIR=dir keeps each fixture's SVG and HTML report there, to look at. */
async function keep(run: Rfc2544Run): Promise<void> {
  const dir = process.env.RAWPOLL_REPORT_DIR;
  if (!dir) return;
  await writeReport(run, join(dir, `${run.test}.svg`));
  await writeReport(run, join(dir, `${run.test}.html`));
}

test('throughput: frames/s and Mbit/s per size, and every trial', async () => {
  const run = throughputRun();
  const t0 = performance.now();
  const svg = await renderSvg(run);
  const ms = performance.now() - t0;
  await keep(run);
  assertBalanced(svg);
  assert.match(svg, /Throughput vs frame size: frames\/s \(left, solid\) and line rate \(right, dashed: with FCS, preamble and gap\)/);
  assert.match(svg, /Every trial \(28\): offered rate vs frame loss/);
  assert.match(svg, /RFC 2544 throughput test · frame sizes/);
  assert.match(svg, /sink clock: not recorded/);
  assertSubtitles(svg, run, 2);
  const pps = points(svg, 'throughput_pps_points');
  assert.deepEqual(pps.map((p) => p.label), run.throughput!.map((r) => `${r.size} B: ${r.ratePps} frames/s, loss 0%`));
  assertLinear(pps.map((p) => p.y), run.throughput!.map((r) => r.ratePps));
  const line = points(svg, 'throughput_mbps_points');
  assert.deepEqual(line.map((p) => p.label), run.throughput!.map((r) => `${r.size} B: ${r.lineMbps} Mbit/s on the line`));
  assertLinear(line.map((p) => p.y), run.throughput!.map((r) => r.lineMbps));
  assert.deepEqual(marks(svg, 'throughput_pps_line'), ['frames/s']);
  const trials = points(svg, 'trials');
  assert.equal(trials.length, run.trials.length);
  assert.deepEqual(trials.filter((t) => t.label.includes('dropped')).map((t) => t.label), ['trial 2: 64 B at 710227 frames/s, loss 0%, but the sink dropped 12 frames itself']);
  assertLinear(trials.map((t) => t.x), run.trials.map((t) => t.ratePps));
  assertLinear(trials.map((t) => t.y), run.trials.map((t) => t.lossPct));
  assert.ok(!svg.includes('Frame loss vs'), 'no plot for results the run does not have');
  console.log(`throughput SVG (${run.trials.length} trials): ${ms.toFixed(0)} ms (the first render in the process)`);
});

test('frame-loss: a loss curve per size over the offered loads', async () => {
  const run = frameLossRun();
  const svg = await renderSvg(run);
  await keep(run);
  assertBalanced(svg);
  assert.match(svg, /Frame loss vs offered load, per frame size \(100% = 1420454 frames\/s\)/);
  assertSubtitles(svg, run, 2);
  const pts = points(svg, 'frame_loss_points');
  assert.equal(pts.length, run.frameLoss!.length);
  assert.equal(pts[0].label, '64 B at 100% (1420454 frames/s): loss 36.64%');
  assertLinear(pts.map((p) => p.x), run.frameLoss!.map((r) => r.offeredPct));
  assertLinear(pts.map((p) => p.y), run.frameLoss!.map((r) => r.lossPct));
  assert.deepEqual(marks(svg, 'frame_loss_line'), ['64 B', '512 B', '1518 B'], 'one line per size');
});

test('latency: the percentile distribution from the histogram, min/p50/p99/max without one', async () => {
  const run = latencyRun();
  const svg = await renderSvg(run);
  await keep(run);
  assertBalanced(svg);
  assert.match(svg, /Latency by percentile, per frame size \(no histogram for 1518 B: min, p50, p99 and max only\)/);
  assert.match(svg, /sink clock: kernel \(CLOCK_REALTIME, SO_TIMESTAMPNS\)/);
  assertSubtitles(svg, run, 2);
  for (const label of ['0%', '90%', '99%', '99.9%', '99.99%', 'max']) assert.ok(svg.includes(`>${label}</text>`), label);
  assert.deepEqual(marks(svg, 'latency_line'), ['64 B'], 'a line through the histogram only');
  // Points: the histogram's max, and the four summary values of the size without a histogram.
  // Labels in µs to the ns (the sink's unit).
  const [l64, l1518] = run.latency!.map((l) => Object.fromEntries(Object.entries(l.latencyUs).map(([k, v]) => [k, Math.round(v * 1000) / 1000])));
  const pts = points(svg, 'latency_points');
  assert.deepEqual(pts.map((p) => p.label), [
    `64 B max: ${l64.max} µs`, `1518 B min: ${l1518.min} µs`, `1518 B p50: ${l1518.p50} µs`, `1518 B p99: ${l1518.p99} µs`, `1518 B max: ${l1518.max} µs`,
  ]);
  assertLinear(pts.map((p) => p.y), [l64.max, l1518.min, l1518.p50, l1518.p99, l1518.max]);
  // The log x of HdrHistogram's plots: p0 at the left edge, then one step per "nine", max a step past p99.99.
  const x = Object.fromEntries(pts.slice(1).map((p) => [p.label.split(' ')[2].replace(':', ''), p.x]));
  const decade = (x.p99 - x.min) / 2;
  assert.equal(x.min, 0);
  assert.ok(Math.abs(x.p50 - decade * Math.log10(2)) < 0.5);
  assert.ok(Math.abs(x.max - 5 * decade) < 0.5);
});

test('latency: a histogram that is not one is a UsageError naming the size', async () => {
  const run = latencyRun();
  run.latency![0] = { ...run.latency![0], histogram: 'not base64 at all' };
  await assert.rejects(renderSvg(run), (e: Error) => e instanceof UsageError && /size 64/.test(e.message));
});

test('back-to-back: every repeat and the mean per size; trials by burst length', async () => {
  const run = backToBackRun();
  const svg = await renderSvg(run);
  await keep(run);
  assertBalanced(svg);
  assert.match(svg, /Back-to-back: longest loss-free burst per frame size at 1420454 frames\/s, 3 repeats and their mean/);
  assert.match(svg, /RFC 2544\/9004 back-to-back test/);
  assertSubtitles(svg, run, 2);
  const repeats = points(svg, 'back_to_back_repeats');
  assert.deepEqual(repeats.map((r) => r.label), run.backToBack!.flatMap((b) => b.frames.map((f, i) => `${b.size} B, repeat ${i + 1}: ${f} frames`)));
  assertLinear(repeats.map((r) => r.y), run.backToBack!.flatMap((b) => b.frames));
  assert.deepEqual(marks(svg, 'back_to_back_mean'), ['64 B, mean: 4096 frames', '512 B, mean: 1010 frames']);
  assert.match(svg, />4096<\/text>/);
  assert.match(svg, />1010<\/text>/);
  assert.match(svg, /Every trial \(12\): burst length vs frame loss/);
  const trials = points(svg, 'trials');
  assert.equal(trials[0].label, 'trial 1: 64 B burst of 4096, loss 0%');
  assertLinear(trials.map((t) => t.x), run.trials.map((t) => t.burst!));
});

test('a run without trials still renders, saying so', async () => {
  const svg = await renderSvg(base('throughput'));
  assertBalanced(svg);
  assert.match(svg, /No results: the run recorded no trials/);
  assert.match(await renderHtml(base('throughput')), /<p>The run recorded no trials\.<\/p>/);
});

test('HTML: header, a table and an inline SVG per result, no external resources, the run as JSON', async () => {
  for (const run of [throughputRun(), frameLossRun(), latencyRun(), backToBackRun()]) {
    const t0 = performance.now();
    const html = await renderHtml(run);
    const ms = performance.now() - t0;
    assert.match(html, /^<!doctype html>/);
    assert.match(html, new RegExp(`<dt>interface</dt><dd>eth1</dd>`));
    assert.match(html, /<dt>target<\/dt><dd>10\.0\.9\.2:9<\/dd>/);
    assert.match(html, /<dt>started<\/dt><dd>2026-03-02T10:15:00\.000Z<\/dd>/);
    assert.doesNotMatch(html, /<script(?![^>]*type="application\/json")|<link|@import|url\(|src=/);
    const sections = [...html.matchAll(/<section id="([a-z-]+)">/g)].map((m) => m[1]);
    const expected = { throughput: ['throughput', 'trials'], 'frame-loss': ['frame-loss', 'trials'], latency: ['latency', 'trials'], 'back-to-back': ['back-to-back', 'trials'] }[run.test];
    assert.deepEqual(sections, expected);
    assert.equal(html.split('<svg ').length - 1, sections.length);
    assert.equal(html.split('<table>').length - 1, sections.length);
    const json = html.match(/<script type="application\/json" id="rawpoll-run">([^]*?)<\/script>/);
    assert.ok(json);
    assert.deepEqual(JSON.parse(json[1]), run);
    console.log(`${run.test} HTML report (${run.trials.length} trials): ${ms.toFixed(0)} ms, ${(html.length / 1024).toFixed(0)} KiB`);
  }
});

test('HTML tables: the frame-loss table is read across, one column per offered load', async () => {
  const html = await renderHtml(frameLossRun());
  assert.match(html, /<th class="n">size \(B\)<\/th><th class="n">loss at 100% \(%\)<\/th><th class="n">loss at 90% \(%\)<\/th>/);
  const loss64 = [100, 90, 80, 70, 60].map((p) => Math.max(0, 100 * (1 - capacity(64) / Math.round(lineRate(64) * p / 100))).toFixed(3));
  assert.deepEqual(loss64, ['36.640', '29.600', '20.800', '9.486', '0.000']);
  assert.ok(html.includes(`<tr><td class="n">64</td>${loss64.map((l) => `<td class="n">${l}</td>`).join('')}`));
  const b2b = await renderHtml(backToBackRun());
  assert.match(b2b, /<tr><td class="n">64<\/td><td>4096, 4160, 4032<\/td><td class="n">4096\.0<\/td><td class="n">1667\.5<\/td><\/tr>/);
  assert.match(b2b, /<tr><td class="n">512<\/td><td>1020, 1000, 1010<\/td><td class="n">1010\.0<\/td><td class="n">–<\/td><\/tr>/);
});

test('everything from the run is escaped: no markup from an interface, target, clock or tool', async () => {
  const evil = '<img src=x onerror=alert(1)>&"\'';
  const run = { ...latencyRun(), iface: `eth0${evil}`, to: `</script><script>alert(2)</script>`, tool: evil, startedAt: evil };
  run.latency = run.latency!.map((l) => ({ ...l, clock: `clk</script>${evil}` }));
  const html = await renderHtml(run);
  const json = html.match(/<script type="application\/json" id="rawpoll-run">([^]*?)<\/script>/);
  assert.ok(json);
  // Outside the JSON (script data, never markup), not one tag from the run; inside it, not one '<'.
  assert.ok(!/<img|<script>|onerror=alert\(1\)>/.test(html.replace(json[0], '')), 'markup from the run outside the JSON');
  assert.ok(!json[1].includes('<'));
  assert.match(html, /<dd>eth0&lt;img src=x onerror=alert\(1\)&gt;&amp;&quot;&#39;<\/dd>/);
  // The JSON cannot close its script element, and still parses back to the run.
  assert.equal(html.split('</script>').length - 1, 1);
  assert.deepEqual(JSON.parse(json[1]), run);
  const svg = await renderSvg(run);
  assertBalanced(svg);
  assert.doesNotMatch(svg, /<img|<script/);
  assert.match(svg, /sink clock: clk&lt;\/script&gt;&lt;img/);
});

test('writeReport: .svg and .html by extension, atomically; .png is a UsageError; a failed write leaves no temp file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-report-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const run = backToBackRun();
  await writeReport(run, join(dir, 'run.svg'));
  await writeReport(run, join(dir, 'run.HTML'));
  assert.match(readFileSync(join(dir, 'run.svg'), 'utf8'), /^<svg /);
  assert.match(readFileSync(join(dir, 'run.HTML'), 'utf8'), /^<!doctype html>/);
  assert.deepEqual(readdirSync(dir).sort(), ['run.HTML', 'run.svg']);

  await assert.rejects(writeReport(run, join(dir, 'run.png')),
    (e: Error) => e instanceof UsageError && e.message.includes('run.png') && e.message.includes('.svg') && e.message.includes('.html'));
  await assert.rejects(writeReport(run, join(dir, 'run')), (e: Error) => e instanceof UsageError && /\(none\)/.test(e.message));

  // A directory that does not exist: nothing is created anywhere.
  const missing = join(dir, 'no-such-dir', 'run.svg');
  await assert.rejects(writeReport(run, missing), (e: Error) => e instanceof RuntimeError && e.message.includes(missing));
  assert.ok(!existsSync(join(dir, 'no-such-dir')));
  // The rename fails (the target is a directory): the written temp file is removed.
  mkdirSync(join(dir, 'taken.html'));
  await assert.rejects(writeReport(run, join(dir, 'taken.html')), RuntimeError);
  assert.deepEqual(readdirSync(dir).sort(), ['run.HTML', 'run.svg', 'taken.html']);
  assert.deepEqual(readdirSync(join(dir, 'taken.html')), []);
});
