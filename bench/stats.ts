/**
 * Small statistics for the benchmarks: percentiles (nearest rank), ratios and
 * the row format every scenario reports in, so `bench/index.ts` can print one table.
 */

/** Summary of a sample of durations (ms). */
export interface Summary {
  n: number;
  p50: number;
  p95: number;
  max: number;
  mean: number;
}

/** The `p`-th percentile (0..100) of `values`, nearest rank; NaN for an empty sample. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** p50 / p95 / max / mean of `values`. */
export function summarize(values: readonly number[]): Summary {
  const mean = values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
  return {
    n: values.length,
    p50: percentile(values, 50),
    p95: percentile(values, 95),
    max: values.length === 0 ? Number.NaN : Math.max(...values),
    mean,
  };
}

/** The median of `values` (used to combine per-round rates). */
export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** `a / b`, NaN when either is missing. */
export function ratio(a: number, b: number): number {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : Number.NaN;
}

/** A target printed next to a measured value: PASS or MISS, never a failure of the run. */
export interface Target {
  /** Human text, e.g. `≥ 0.9× floor`. */
  text: string;
  pass: boolean;
}

/** Checks `value op limit`, with a readable description. */
export function target(value: number, op: '<=' | '>=' | '<', limit: number, text: string): Target {
  const pass = Number.isFinite(value) && (op === '<=' ? value <= limit : op === '>=' ? value >= limit : value < limit);
  return { text, pass };
}

/** One line of the results table. */
export interface Row {
  scenario: string;
  contender: string;
  metric: string;
  /** Formatted value for the table. */
  value: string;
  /** The raw number(s), for the JSON file. */
  raw?: unknown;
  /** Formatted ratio (e.g. to the floor), if any. */
  ratio?: string;
  target?: Target;
}

/** `1234.5` → `1 235`; small numbers keep `digits` decimals. */
export function fmt(n: number, digits = 1): string {
  if (!Number.isFinite(n)) return '—';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US').replace(/,/g, ' ');
  if (Math.abs(n) >= 100) return n.toFixed(0);
  return n.toFixed(digits);
}

/** `p50 0.6 / p95 1.2 / max 3.4 ms` */
export function fmtSummary(s: Summary, unit = 'ms', digits = 2): string {
  return `p50 ${fmt(s.p50, digits)} / p95 ${fmt(s.p95, digits)} / max ${fmt(s.max, digits)} ${unit} (n=${s.n})`;
}

/** `0.93×` */
export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : '—';
}

/** Renders rows as one plain-text table (also valid Markdown). */
export function renderTable(rows: readonly Row[]): string {
  const header = ['scenario', 'contender', 'metric', 'value', 'ratio', 'target'];
  const cells = rows.map((r) => [
    r.scenario,
    r.contender,
    r.metric,
    r.value,
    r.ratio ?? '',
    r.target ? `${r.target.pass ? 'PASS' : 'MISS'} ${r.target.text}` : '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => `| ${c.map((v, i) => v.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}
