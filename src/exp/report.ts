/**
 * The report of an RFC 2544 / RFC 9004 run (exp/results.ts): plots as one standalone SVG, or an HTML page with the
 * header, the result tables, the plots and the run's JSON. Rendered in Node without a browser: vega-lite compiles
 * each plot to a vega spec and vega's headless View (renderer 'none') writes SVG, measuring text by estimate, so
 * no canvas and no fonts are needed. Everything taken from the run is escaped: vega escapes its SVG text itself,
 * esc() does the HTML.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { RuntimeError, UsageError } from '../errors.js';
import { decodeHistogram } from '../rx/histogram.js';
import type { Rfc2544Run } from './results.js';

/** A plot of the report: one entry of the SVG's vconcat, or a top-level spec of its own in the HTML. */
type PlotSpec = Extract<TopLevelSpec, { vconcat: unknown }>['vconcat'][number];

interface Plot {
  /** The HTML section it belongs to. */
  id: 'throughput' | 'frame-loss' | 'latency' | 'back-to-back' | 'trials' | 'empty';
  title: string;
  spec: PlotSpec;
}

const WIDTH = 560;
const HEIGHT = 260;

const CONFIG = {
  font: 'sans-serif',
  background: 'white',
  padding: 16,
  title: { anchor: 'start', fontSize: 14, subtitleFontSize: 11, subtitleColor: '#444', offset: 12 },
  axis: { labelFontSize: 10, titleFontSize: 11, titleFontWeight: 'normal', gridColor: '#e6e6e6' },
  legend: { labelFontSize: 10, titleFontSize: 11, titleFontWeight: 'normal', labelLimit: 400 },
  view: { stroke: '#ccc' },
} as const;

/**
 * HdrHistogram's percentile plot: x is 1 / (1 − q) (the `1/(1-Percentile)` column of its percentile output) on a log
 * axis, so 90%, 99%, 99.9% and 99.99% are evenly spaced. The maximum has no finite place there: it goes one decade
 * past 99.99%, labelled "max".
 */
const MAX_X = 1e5;
const PERCENTILE_LABEL = `datum.value >= ${MAX_X} ? 'max' : format(100 - 100 / datum.value, '.4~f') + '%'`;
/** p0 … p99.99: ten points a decade of 1 / (1 − q). */
const QUANTILES = Array.from({ length: 41 }, (_, k) => 1 - 10 ** (-k / 10));

const TEST_NAMES: Record<Rfc2544Run['test'], string> = {
  throughput: 'RFC 2544 throughput',
  latency: 'RFC 2544 latency',
  'frame-loss': 'RFC 2544 frame loss rate',
  'back-to-back': 'RFC 2544/9004 back-to-back',
};

function testName(run: Rfc2544Run): string {
  return TEST_NAMES[run.test] ?? `RFC 2544 ${String(run.test)}`;
}

/** The sink's clock: only latency results name it (a run has no clock of its own in results.ts). */
function sinkClock(run: Rfc2544Run): string {
  const clocks = [...new Set((run.latency ?? []).map((l) => l.clock))];
  return clocks.length ? clocks.join(', ') : 'not recorded';
}

function sizesText(run: Rfc2544Run): string {
  return `${run.sizes.join(', ')} bytes (${run.sizesCountFcs ? 'with' : 'without'} the 4-byte FCS)`;
}

function toleranceText(run: Rfc2544Run): string {
  return `${run.lossTolerancePct}% (${run.lossTolerancePct > 0 ? 'partial-drop rate' : 'no-drop rate'})`;
}

/** What every plot's title says about the run, so a plot cut out of the report still says what it measured. */
function subtitle(run: Rfc2544Run): string[] {
  return [
    `${testName(run)} test · frame sizes ${sizesText(run)}`,
    `sink clock: ${sinkClock(run)} · trials of ${run.trialSeconds} s · loss tolerance ${toleranceText(run)}`,
  ];
}

function title(run: Rfc2544Run, text: string): PlotSpec['title'] {
  return { text, subtitle: subtitle(run) };
}

function sizeAxis(run: Rfc2544Run) {
  const title = `frame size (bytes, ${run.sizesCountFcs ? 'with' : 'without'} FCS)`;
  return { field: 'size', type: 'ordinal', title, sort: 'ascending', axis: { labelAngle: 0 } } as const;
}
const SIZE_COLOR = { field: 'size', type: 'nominal', title: 'size (B)', sort: 'ascending', scale: { scheme: 'category10' } } as const;

/**
 * Every mark says what it shows in its own words: `label` becomes its aria-label (vega-lite's description channel),
 * which a screen reader reads and a test can count; a static SVG has no tooltips. Line marks are one per size and
 * carry the series' label.
 */
const LABEL = { description: { field: 'label' } } as const;
const SERIES = { description: { field: 'series' } } as const;

function throughputPlot(run: Rfc2544Run): Plot | null {
  const rows = run.throughput ?? [];
  if (rows.length === 0) return null;
  const pps = rows.map((r) => ({ size: r.size, value: r.ratePps, series: 'frames/s', label: `${r.size} B: ${r.ratePps} frames/s, loss ${r.lossPct}%` }));
  const mbps = rows.map((r) => ({ size: r.size, value: r.lineMbps, series: 'line Mbit/s', label: `${r.size} B: ${r.lineMbps} Mbit/s on the line` }));
  // Two y scales over one x: frames/s fall with the size while the line rate rises towards the link's.
  const axis = (values: object[], name: string, color: string, y: object, dash: number[], shape: string): PlotSpec => ({
    data: { values },
    encoding: { x: sizeAxis(run), y: { field: 'value', type: 'quantitative', ...y } },
    layer: [
      { name: `${name}_line`, mark: { type: 'line', color, strokeDash: dash }, encoding: SERIES },
      { name: `${name}_points`, mark: { type: 'point', filled: true, color, shape }, encoding: LABEL },
    ],
  } as PlotSpec);
  return {
    id: 'throughput',
    title: 'Throughput vs frame size',
    spec: {
      title: title(run, 'Throughput vs frame size: frames/s (left, solid) and line rate (right, dashed: with FCS, preamble and gap)'),
      width: WIDTH, height: HEIGHT,
      layer: [
        axis(pps, 'throughput_pps', '#1f77b4', { title: 'throughput (frames/s)', axis: { format: '~s', titleColor: '#1f77b4' } }, [], 'circle'),
        axis(mbps, 'throughput_mbps', '#d62728', { title: 'line rate (Mbit/s)', axis: { orient: 'right', titleColor: '#d62728' } }, [6, 3], 'square'),
      ],
      resolve: { scale: { y: 'independent' } },
    } as PlotSpec,
  };
}

/** A loss axis from 0; when nothing was lost, 0–1% rather than vega's collapsed 0–0. */
function lossScale(losses: number[]): { zero: true } | { domain: [number, number] } {
  return losses.some((l) => l > 0) ? { zero: true } : { domain: [0, 1] };
}

function frameLossPlot(run: Rfc2544Run): Plot | null {
  const rows = run.frameLoss ?? [];
  if (rows.length === 0) return null;
  const values = rows.map((r) => ({
    size: r.size, offeredPct: r.offeredPct, lossPct: r.lossPct, series: `${r.size} B`,
    label: `${r.size} B at ${r.offeredPct}% (${r.ratePps} frames/s): loss ${r.lossPct}%`,
  }));
  return {
    id: 'frame-loss',
    title: 'Frame loss vs offered load',
    spec: {
      title: title(run, `Frame loss vs offered load, per frame size (100% = ${run.maxRatePps} frames/s)`),
      width: WIDTH, height: HEIGHT,
      data: { values },
      encoding: {
        x: { field: 'offeredPct', type: 'quantitative', title: 'offered load (% of the maximum rate)', scale: { domain: [0, 100] } },
        y: { field: 'lossPct', type: 'quantitative', title: 'frame loss (%)', scale: lossScale(values.map((v) => v.lossPct)) },
        color: SIZE_COLOR,
      },
      layer: [
        { name: 'frame_loss_line', mark: { type: 'line' }, encoding: SERIES },
        { name: 'frame_loss_points', mark: { type: 'point', filled: true }, encoding: LABEL },
      ],
    },
  };
}

interface LatencyPoint {
  size: number;
  /** 1 / (1 − q); MAX_X for the maximum. */
  x: number;
  us: number;
  /** 'histogram': from the sink's HdrHistogram; 'summary': min/p50/p99/max only (no histogram in the run). */
  from: 'histogram' | 'summary';
  named: boolean;
  series: string;
  label: string;
}

/** µs to the ns the sink measured, without binary fractions' tails (4.512000000000001). */
const roundUs = (us: number): number => Math.round(us * 1000) / 1000;

/** The percentile distribution of one size, p0 … p99.99 and the max, µs, clamped to the exact min and max. */
function latencyPoints(l: NonNullable<Rfc2544Run['latency']>[number]): LatencyPoint[] {
  const { min, p50, p99, max } = l.latencyUs;
  const point = (x: number, name: string, us: number, from: LatencyPoint['from'], named = true): LatencyPoint =>
    ({ size: l.size, x, us: roundUs(us), from, named, series: `${l.size} B`, label: `${l.size} B ${name}: ${roundUs(us)} µs` });
  if (l.histogram !== null) {
    const h = decodeHistogram(l.histogram, `in the latency result of size ${l.size}`);
    try {
      if (h.totalCount > 0) {
        const points = QUANTILES.map((q) =>
          point(1 / (1 - q), `p${+(100 * q).toFixed(4)}`, Math.min(Math.max(h.getValueAtPercentile(100 * q) / 1000, min), max), 'histogram', false));
        points.push(point(MAX_X, 'max', max, 'histogram'));
        return points;
      }
    } finally {
      h.destroy();
    }
  }
  return [point(1, 'min', min, 'summary'), point(2, 'p50', p50, 'summary'), point(100, 'p99', p99, 'summary'), point(MAX_X, 'max', max, 'summary')];
}

function latencyPlot(run: Rfc2544Run): Plot | null {
  const rows = run.latency ?? [];
  if (rows.length === 0) return null;
  const values = rows.flatMap(latencyPoints);
  const summaries = [...new Set(values.filter((v) => v.from === 'summary').map((v) => v.size))];
  const note = summaries.length ? ` (no histogram for ${summaries.join(', ')} B: min, p50, p99 and max only)` : '';
  return {
    id: 'latency',
    title: 'Latency distribution',
    spec: {
      title: title(run, `Latency by percentile, per frame size${note}`),
      width: WIDTH, height: HEIGHT,
      data: { values },
      encoding: {
        x: {
          field: 'x', type: 'quantitative', title: 'percentile',
          scale: { type: 'log', domain: [1, MAX_X] },
          axis: { values: [1, 10, 100, 1000, 10000, MAX_X], labelExpr: PERCENTILE_LABEL, grid: true },
        },
        y: { field: 'us', type: 'quantitative', title: 'latency (µs)' },
        color: SIZE_COLOR,
      },
      layer: [
        // A line only through a histogram's percentiles: between a summary's four values nothing is known.
        { name: 'latency_line', transform: [{ filter: "datum.from === 'histogram'" }], mark: { type: 'line' }, encoding: SERIES },
        {
          // Points where the values are few (a summary's) or named (the max), so they can be read off.
          name: 'latency_points',
          transform: [{ filter: 'datum.named' }],
          mark: { type: 'point', filled: true },
          encoding: LABEL,
        },
      ],
    },
  };
}

function backToBackPlot(run: Rfc2544Run): Plot | null {
  const rows = run.backToBack ?? [];
  if (rows.length === 0) return null;
  const repeats = rows.flatMap((r) => r.frames.map((frames, i) => ({ size: r.size, frames, label: `${r.size} B, repeat ${i + 1}: ${frames} frames` })));
  const means = rows.map((r) => ({ size: r.size, frames: r.meanFrames, label: `${r.size} B, mean: ${r.meanFrames} frames` }));
  const y = { field: 'frames', type: 'quantitative', title: 'longest loss-free burst (frames)' } as const;
  return {
    id: 'back-to-back',
    title: 'Back-to-back burst per frame size',
    spec: {
      title: title(run, `Back-to-back: longest loss-free burst per frame size at ${run.maxRatePps} frames/s, ${run.repeat} repeats and their mean`),
      width: WIDTH, height: HEIGHT,
      encoding: { x: sizeAxis(run), y },
      layer: [
        { name: 'back_to_back_repeats', data: { values: repeats }, mark: { type: 'point', opacity: 0.7, color: '#1f77b4' }, encoding: LABEL },
        { name: 'back_to_back_mean', data: { values: means }, mark: { type: 'tick', thickness: 2, size: 40, color: '#d62728' }, encoding: LABEL },
        {
          name: 'back_to_back_mean_label',
          data: { values: means },
          mark: { type: 'text', align: 'left', dx: 24, color: '#d62728' },
          encoding: { text: { field: 'frames', type: 'quantitative', format: '.1~f' }, ...LABEL },
        },
      ],
    },
  };
}

const UNTRUSTED = 'dropped frames itself (loss not trusted)';

function trialsPlot(run: Rfc2544Run): Plot | null {
  if (run.trials.length === 0) return null;
  // Back-to-back trials all run at the maximum rate: their burst length is what varies, so it is their x.
  const bursts = run.trials.every((t) => t.burst !== null);
  const values = run.trials.map((t, i) => ({
    size: t.size, ratePps: t.ratePps, burst: t.burst, lossPct: t.lossPct, sink: t.ownDrops > 0 ? UNTRUSTED : 'ok',
    label: `trial ${i + 1}: ${t.size} B ${bursts ? `burst of ${t.burst}` : `at ${t.ratePps} frames/s`}, loss ${t.lossPct}%` +
      (t.ownDrops > 0 ? `, but the sink dropped ${t.ownDrops} frames itself` : ''),
  }));
  const untrusted = values.some((v) => v.sink === UNTRUSTED);
  const layer: PlotSpec[] = [{
    name: 'trials',
    data: { values },
    mark: { type: 'point', filled: true, opacity: 0.8 },
    encoding: {
      x: bursts
        ? { field: 'burst', type: 'quantitative', title: `burst (frames, at ${run.maxRatePps} frames/s)`, axis: { format: '~s' } }
        : { field: 'ratePps', type: 'quantitative', title: 'offered rate (frames/s)', axis: { format: '~s' } },
      y: { field: 'lossPct', type: 'quantitative', title: 'frame loss (%)', scale: lossScale([...values.map((v) => v.lossPct), run.lossTolerancePct]) },
      color: SIZE_COLOR,
      // Marked only when it happened: a trial in which the sink itself dropped frames measured the sink, not the device.
      ...(untrusted ? { shape: { field: 'sink', type: 'nominal', title: 'sink', scale: { domain: ['ok', UNTRUSTED], range: ['circle', 'cross'] } } } : {}),
      ...LABEL,
    },
  } as PlotSpec];
  if (run.lossTolerancePct > 0 && (run.test === 'throughput' || run.test === 'latency')) {
    layer.push({
      name: 'trials_tolerance',
      data: { values: [{ lossPct: run.lossTolerancePct, label: `loss tolerance ${run.lossTolerancePct}%` }] },
      mark: { type: 'rule', strokeDash: [4, 4], color: '#888' },
      encoding: { y: { field: 'lossPct', type: 'quantitative' }, ...LABEL },
    });
  }
  return {
    id: 'trials',
    title: 'Trials',
    spec: {
      title: title(run, `Every trial (${run.trials.length}): ${bursts ? 'burst length' : 'offered rate'} vs frame loss`),
      width: WIDTH, height: HEIGHT,
      layer,
    } as PlotSpec,
  };
}

function plots(run: Rfc2544Run): Plot[] {
  const all = [throughputPlot(run), frameLossPlot(run), latencyPlot(run), backToBackPlot(run), trialsPlot(run)];
  const some = all.filter((p): p is Plot => p !== null);
  if (some.length > 0) return some;
  return [{
    id: 'empty',
    title: 'No results',
    spec: {
      title: title(run, 'No results: the run recorded no trials'),
      width: WIDTH, height: 40,
      data: { values: [{ text: 'nothing to plot' }] },
      mark: { type: 'text' },
      encoding: { text: { field: 'text' } },
    },
  }];
}

function runLine(run: Rfc2544Run): string {
  return `${run.tool}: ${testName(run)} on ${run.iface} to ${run.to}, started ${run.startedAt}`;
}

/**
 * vega and vega-lite are loaded on the first report, not with the module: they take 0.3-0.7 s to import (measured on
 * a loaded 2-core VM), which every other rawpoll command would otherwise pay at start-up.
 */
async function toSvg(spec: TopLevelSpec): Promise<string> {
  const [vega, { compile }] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none', logLevel: vega.Warn });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** One standalone SVG: the plots that apply to the run, one above the other. */
export async function renderSvg(run: Rfc2544Run): Promise<string> {
  return toSvg({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: runLine(run), fontSize: 15, anchor: 'start' },
    config: CONFIG,
    spacing: 48,
    // Each plot its own legend: sizes differ between results, and the sink's-drops shape is only in the trials.
    resolve: { scale: { color: 'independent', shape: 'independent' }, legend: { color: 'independent', shape: 'independent' } },
    vconcat: plots(run).map((p) => p.spec),
  });
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text and attribute values from the run, made inert. */
function esc(v: unknown): string {
  return String(v).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** A number for a table cell: `digits` decimals (integers as they are), a dash for null/NaN. */
function num(v: number | null | undefined, digits = 0): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return esc(Number.isInteger(v) && digits === 0 ? String(v) : v.toFixed(digits));
}

function table(headers: string[], rows: string[][], numeric: boolean[] = []): string {
  const th = headers.map((h, i) => `<th${numeric[i] ? ' class="n"' : ''}>${esc(h)}</th>`).join('');
  const trs = rows.map((r) => `<tr>${r.map((c, i) => `<td${numeric[i] ? ' class="n"' : ''}>${c}</td>`).join('')}</tr>`);
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${trs.join('\n')}\n</tbody></table>`;
}

function resultTable(run: Rfc2544Run, id: Plot['id']): string {
  switch (id) {
    case 'throughput':
      return table(['size (B)', 'throughput (frames/s)', 'line (Mbit/s)', 'loss (%)'],
        (run.throughput ?? []).map((r) => [num(r.size), num(r.ratePps), num(r.lineMbps, 1), num(r.lossPct, 3)]), [true, true, true, true]);
    case 'frame-loss': {
      // One row per size, one column per offered load: the RFC's table, read across.
      const rows = run.frameLoss ?? [];
      const loads = [...new Set(rows.map((r) => r.offeredPct))].sort((a, b) => b - a);
      const sizes = [...new Set(rows.map((r) => r.size))].sort((a, b) => a - b);
      return table(['size (B)', ...loads.map((p) => `loss at ${p}% (%)`)], sizes.map((s) => [num(s), ...loads.map((p) => {
        const r = rows.find((x) => x.size === s && x.offeredPct === p);
        return r ? num(r.lossPct, 3) : '–';
      })]), [true, ...loads.map(() => true)]);
    }
    case 'latency':
      return table(['size (B)', 'rate (frames/s)', 'min (µs)', 'p50 (µs)', 'p99 (µs)', 'max (µs)', 'avg (µs)', 'clock'],
        (run.latency ?? []).map((r) => [num(r.size), num(r.ratePps), num(r.latencyUs.min, 1), num(r.latencyUs.p50, 1),
          num(r.latencyUs.p99, 1), num(r.latencyUs.max, 1), num(r.latencyUs.avg, 1), esc(r.clock)]),
        [true, true, true, true, true, true, true, false]);
    case 'back-to-back':
      return table(['size (B)', 'longest loss-free burst per repeat (frames)', 'mean (frames)', 'implied buffer (µs, RFC 9004)'],
        (run.backToBack ?? []).map((r) => [num(r.size), r.frames.map((f) => num(f)).join(', '), num(r.meanFrames, 1), num(r.bufferTimeUs, 1)]),
        [true, false, true, true]);
    case 'trials':
      return `<details><summary>all ${num(run.trials.length)} trials</summary>\n` +
        table(['#', 'size (B)', 'offered (frames/s)', 'achieved (frames/s)', 'burst', 'sent', 'received', 'loss (%)', 'sink drops', 's', 'latency p50/p99 (µs)'],
          run.trials.map((t, i) => [num(i + 1), num(t.size), num(t.ratePps), num(t.achievedPps), num(t.burst), num(t.sent), num(t.received),
            num(t.lossPct, 3), num(t.ownDrops), num(t.seconds, 3),
            t.latencyUs ? `${num(t.latencyUs.p50, 1)}/${num(t.latencyUs.p99, 1)}` : '–']),
          [true, true, true, true, true, true, true, true, true, true, true]) + '\n</details>';
    case 'empty':
      return '<p>The run recorded no trials.</p>';
  }
}

/** The run as JSON inside a script element: every `<` escaped (JSON's \u003c), so no `</script>` or `<!--` can end it. */
function embedJson(run: Rfc2544Run): string {
  return JSON.stringify(run, null, 1).replace(/</g, '\\u003c');
}

const STYLE = `body{font:14px/1.4 sans-serif;margin:24px;color:#111;max-width:1100px}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:28px 0 8px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0}dt{color:#555}dd{margin:0}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3;font-weight:normal}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:12px 0}figure svg{max-width:100%;height:auto}summary{cursor:pointer;color:#555}`;

/** One self-contained HTML page: header, then per result its table and plot, then the run as JSON. */
export async function renderHtml(run: Rfc2544Run): Promise<string> {
  const header: [string, string][] = [
    ['test', `${esc(testName(run))} (${esc(run.test)})`],
    ['started', esc(run.startedAt)],
    ['interface', esc(run.iface)],
    ['target', esc(run.to)],
    ['tool', esc(run.tool)],
    ['frame sizes', esc(sizesText(run))],
    ['trial', `${num(run.trialSeconds, 3)} s`],
    ['loss tolerance', esc(toleranceText(run))],
    ['maximum rate', `${num(run.maxRatePps)} frames/s`],
    ['resolution', `${num(run.resolutionPct, 3)}%`],
    ['repeats', num(run.repeat)],
    ['sink clock', esc(sinkClock(run))],
  ];
  const sections: string[] = [];
  for (const p of plots(run)) {
    const svg = await toSvg({ $schema: 'https://vega.github.io/schema/vega-lite/v6.json', config: CONFIG, ...p.spec } as TopLevelSpec);
    sections.push(`<section id="${p.id}">\n<h2>${esc(p.title)}</h2>\n${resultTable(run, p.id)}\n<figure>${svg}</figure>\n</section>`);
  }
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(`${testName(run)}: ${run.iface} to ${run.to}, ${run.startedAt}`)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>${esc(testName(run))} test</h1>
<dl>
${header.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${v}</dd>`).join('\n')}
</dl>
</header>
${sections.join('\n')}
<script type="application/json" id="rawpoll-run">
${embedJson(run)}
</script>
</body>
</html>
`;
}

/**
 * Writes the report `file` as SVG or HTML (by its extension): rendered first, then written to a temporary file in
 * the same directory, synced and renamed over `file`, so a reader never sees half a report; the temporary file is
 * removed when anything fails.
 */
export async function writeReport(run: Rfc2544Run, file: string): Promise<void> {
  const ext = extname(file).toLowerCase();
  if (ext !== '.svg' && ext !== '.html') {
    throw new UsageError(`report file ${file}: extension ${ext ? `'${ext}'` : '(none)'} is not one of .svg, .html`);
  }
  const text = ext === '.svg' ? await renderSvg(run) : await renderHtml(run);
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw new RuntimeError(`cannot write report ${file}: ${(e as Error).message}`);
  }
}
