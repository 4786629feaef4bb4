/**
 * The chaos checker: reads the histories of every worker, the suite's run log
 * (phases, nemesis actions, worker exits) and the final registers, and says
 * what happened, per nemesis. It imports nothing from the library: it judges
 * the library by what the workers recorded and what the storage holds.
 *
 * `node --import tsx chaos/checker.ts <runDir>` prints the table and exits 1 on
 * a failure (see {@link Report.failures}).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Entry, Register, RunEvent } from './history';

/** The registers as read from the storage after every worker stopped. */
export interface FinalRegisters {
  unfenced: string[];
  fenced: string[];
}

interface Op {
  op: string;
  slot: number;
  pid: number;
  acquiredAt?: number;
  fence?: bigint;
  /** End of the critical section: its 'section-end' step, else (the process died) its last step in the section. */
  endAt: number;
  ended: boolean;
  told: boolean;
  writes: Partial<Record<Register, 'attempted' | 'acked' | 'refused' | 'error'>>;
  refusals: number;
}

/** One row of the table: one nemesis (phase). */
export interface PhaseRow {
  nemesis: string;
  /** Nemesis actions taken in this phase. */
  events: number;
  /** Critical sections entered (each one reads and writes both registers). */
  acquisitions: number;
  /** Pairs of critical sections of different workers that overlapped in time. */
  overlaps: number;
  /** Sections still open when another worker acquired, and how many of them were told (lost / aborted signal). */
  staleHolders: number;
  staleTold: number;
  /** Acknowledged writes missing from the final register. */
  lostUnfenced: number;
  lostFenced: number;
  /** Fenced reads and writes refused for a lower fence. */
  fencedRefusals: number;
  /** Nemesis targets that had to be told (their section outlived the lease or the store's memory), and how many were. */
  targets: number;
  targetsTold: number;
}

/** What the checker found. */
export interface Report {
  rows: PhaseRow[];
  totals: PhaseRow;
  /** Worker exits the suite did not cause. */
  crashes: Array<{ slot: number; pid: number; code: number | null; signal: string | null; held: boolean }>;
  unhandled: Array<{ pid: number; error: string }>;
  /** Ids in the fenced register whose fences decrease along the list (fencing broken). */
  fencedOrderViolations: number;
  /** Ids in a register that no worker wrote. */
  unknownIds: number;
  /** Writes sent but never acknowledged (the worker died or the storage failed) that landed anyway. */
  indeterminateLanded: number;
  /** Why the run fails; empty when it passes. */
  failures: string[];
}

function readJsonLines<T>(path: string): T[] {
  const out: T[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      // A line cut short by SIGKILL in the middle of a write: nothing after it was written either.
    }
  }
  return out;
}

function emptyRow(nemesis: string): PhaseRow {
  return {
    nemesis,
    events: 0,
    acquisitions: 0,
    overlaps: 0,
    staleHolders: 0,
    staleTold: 0,
    lostUnfenced: 0,
    lostFenced: 0,
    fencedRefusals: 0,
    targets: 0,
    targetsTold: 0,
  };
}

/** Reads a run directory and checks it. */
export function checkRun(dir: string): Report {
  const entries: Entry[] = [];
  for (const file of readdirSync(dir)) if (file.startsWith('history-')) entries.push(...readJsonLines<Entry>(join(dir, file)));
  const run = readJsonLines<RunEvent>(join(dir, 'run.jsonl'));
  const final = JSON.parse(readFileSync(join(dir, 'final.json'), 'utf8')) as FinalRegisters;
  return check(entries, run, final);
}

/** Checks histories against the run log and the final registers. */
export function check(entries: readonly Entry[], run: readonly RunEvent[], final: FinalRegisters): Report {
  const ops = new Map<string, Op>();
  const unhandled: Report['unhandled'] = [];
  for (const e of [...entries].sort((a, b) => a.t - b.t)) {
    if (e.type === 'unhandled') unhandled.push({ pid: e.pid, error: e.error.split('\n')[0] });
    const id = 'op' in e ? e.op : undefined;
    if (!id) continue;
    let op = ops.get(id);
    if (!op) ops.set(id, (op = { op: id, slot: e.slot, pid: e.pid, endAt: e.t, ended: false, told: false, writes: {}, refusals: 0 }));
    if (!op.ended && e.type !== 'done' && e.type !== 'run-error' && e.type !== 'lost') op.endAt = Math.max(op.endAt, e.t);
    switch (e.type) {
      case 'section-end':
        op.ended = true;
        break;
      case 'acquired':
        op.acquiredAt = e.t;
        op.fence = BigInt(e.fence);
        break;
      case 'lost':
      case 'abort':
        op.told = true;
        break;
      case 'write':
        op.writes[e.reg] = 'attempted';
        break;
      case 'write-ack':
        op.writes[e.reg] = 'acked';
        break;
      case 'write-refused':
        op.writes[e.reg] = 'refused';
        op.refusals += 1;
        break;
      case 'read-refused':
        op.refusals += 1;
        break;
      case 'storage-error':
        if (op.writes[e.reg] === 'attempted') op.writes[e.reg] = 'error';
        break;
      default:
        break;
    }
  }

  const phases = run.filter((r): r is Extract<RunEvent, { type: 'phase' }> => r.type === 'phase');
  const rows = new Map<string, PhaseRow>(phases.map((p) => [p.name, emptyRow(p.name)]));
  const between = emptyRow('(between phases)');
  const rowAt = (t: number): PhaseRow => {
    const phase = phases.find((p) => p.start <= t && t < p.end);
    return (phase && rows.get(phase.name)) ?? between;
  };

  const sections = [...ops.values()].filter((o) => o.acquiredAt !== undefined).sort((a, b) => (a.acquiredAt as number) - (b.acquiredAt as number));
  const stale = new Set<Op>();
  for (const op of sections) {
    rowAt(op.acquiredAt as number).acquisitions += 1;
    rowAt(op.acquiredAt as number).fencedRefusals += op.refusals;
  }
  // Overlaps: a later section (of another process) that began while an earlier one was still open.
  sections.forEach((earlier, i) => {
    for (let j = i + 1; j < sections.length; j++) {
      const later = sections[j];
      if ((later.acquiredAt as number) >= earlier.endAt) break;
      if (later.pid === earlier.pid) continue;
      rowAt(later.acquiredAt as number).overlaps += 1;
      stale.add(earlier);
    }
  });
  for (const op of stale) {
    const row = rowAt(op.acquiredAt as number);
    row.staleHolders += 1;
    if (op.told) row.staleTold += 1;
  }

  // Lost updates: acknowledged writes missing from the final register.
  const present = { unfenced: new Set(final.unfenced), fenced: new Set(final.fenced) };
  let indeterminateLanded = 0;
  for (const op of sections) {
    for (const reg of ['unfenced', 'fenced'] as const) {
      const write = op.writes[reg];
      if (write === 'acked' && !present[reg].has(op.op)) {
        if (reg === 'unfenced') rowAt(op.acquiredAt as number).lostUnfenced += 1;
        else rowAt(op.acquiredAt as number).lostFenced += 1;
      }
      if ((write === 'attempted' || write === 'error') && present[reg].has(op.op)) indeterminateLanded += 1;
    }
  }
  let unknownIds = 0;
  for (const id of [...final.unfenced, ...final.fenced]) if (!ops.get(id)?.acquiredAt) unknownIds += 1;
  // The fenced register must list its writes in fence order: a write never lands after a higher fence was seen.
  let fencedOrderViolations = 0;
  let previous = -1n;
  for (const id of final.fenced) {
    const fence = ops.get(id)?.fence;
    if (fence === undefined) continue;
    if (fence < previous) fencedOrderViolations += 1;
    previous = fence > previous ? fence : previous;
  }

  // Nemesis targets: the section open when the nemesis struck; it must be told if it outlived its lease
  // (someone else acquired meanwhile) or, for a store restart, was still open when the store came back.
  for (const n of run) {
    if (n.type !== 'nemesis') continue;
    const row = rowAt(n.start);
    row.events += 1;
    if (n.kind === 'kill') continue; // a dead process is not told; its lease simply expires
    const target = sections.find((o) => o.pid === n.pid && (o.acquiredAt as number) <= n.start && o.endAt >= n.start);
    if (!target) continue;
    const mustBeTold = stale.has(target) || (n.back !== undefined && target.endAt > n.back) || target.told;
    if (!mustBeTold) continue;
    row.targets += 1;
    if (target.told) row.targetsTold += 1;
  }

  const exits = run.filter((r): r is Extract<RunEvent, { type: 'exit' }> => r.type === 'exit');
  const crashes = exits
    .filter((x) => !x.expected)
    .map((x) => {
      const last = sections.filter((o) => o.pid === x.pid).pop();
      const held = !!last && !last.ended;
      return { slot: x.slot, pid: x.pid, code: x.code, signal: x.signal, held };
    });

  const allRows = [...rows.values(), ...(between.acquisitions + between.events > 0 ? [between] : [])];
  const totals = emptyRow('total');
  for (const row of allRows) {
    for (const key of Object.keys(totals) as Array<keyof PhaseRow>) {
      if (key !== 'nemesis') (totals[key] as number) += row[key] as number;
    }
  }
  const failures: string[] = [];
  if (totals.lostFenced > 0) failures.push(`${totals.lostFenced} acknowledged fenced write(s) missing from the fenced register`);
  if (fencedOrderViolations > 0) failures.push(`${fencedOrderViolations} fenced write(s) landed after a higher fence`);
  if (unknownIds > 0) failures.push(`${unknownIds} register entr(ies) that no recorded critical section wrote`);
  for (const c of crashes) {
    failures.push(`worker ${c.slot} (pid ${c.pid}) crashed (${c.signal ?? `exit code ${c.code}`}) while ${c.held ? 'holding the lock' : 'holding nothing'}`);
  }
  for (const u of unhandled) failures.push(`unhandled rejection or exception in pid ${u.pid}: ${u.error}`);
  if (totals.acquisitions === 0) failures.push('no critical section was entered at all');
  return { rows: allRows, totals, crashes, unhandled, fencedOrderViolations, unknownIds, indeterminateLanded, failures };
}

/** The report as a Markdown table plus a few lines. */
export function renderReport(report: Report): string {
  const head = [
    'nemesis',
    'events',
    'acquisitions',
    'overlapping sections',
    'lost updates unfenced',
    'lost updates fenced',
    'fenced refusals',
    'stale holders told',
    'nemesis targets told',
  ];
  const line = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`;
  const ratio = (told: number, of: number) => (of === 0 ? '–' : `${told}/${of}`);
  const rows = [...report.rows, report.totals].map((r) =>
    line([
      r.nemesis,
      r.events,
      r.acquisitions,
      r.overlaps,
      r.lostUnfenced,
      r.lostFenced,
      r.fencedRefusals,
      ratio(r.staleTold, r.staleHolders),
      ratio(r.targetsTold, r.targets),
    ]),
  );
  const out = [line(head), line(head.map(() => '---')), ...rows, ''];
  out.push(
    `fenced register in fence order: ${report.fencedOrderViolations === 0 ? 'yes' : `NO (${report.fencedOrderViolations} violations)`}; ` +
      `unknown ids: ${report.unknownIds}; unacknowledged writes that landed: ${report.indeterminateLanded}; ` +
      `crashes: ${report.crashes.length}; unhandled rejections: ${report.unhandled.length}`,
  );
  out.push(report.failures.length === 0 ? 'PASS' : `FAIL:\n${report.failures.map((f) => `  - ${f}`).join('\n')}`);
  return out.join('\n');
}

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: node --import tsx chaos/checker.ts <runDir>\n');
    process.exit(64);
  }
  const report = checkRun(dir);
  process.stdout.write(`${renderReport(report)}\n`);
  process.exit(report.failures.length === 0 ? 0 : 1);
}
