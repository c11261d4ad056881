/** Formatting helpers shared by commands. */
import type { ProcessRecord } from '../protocol/index.js';

/** "3s ago", "5m ago", "2h ago", "4d ago". */
export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h}h ago`;
  return `${Math.round(h / 24)}d ago`;
}

/** Parses `-i key=value` pairs: a value that parses as JSON is taken as JSON, else as a string. */
export function parseKeyValues(pairs: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`-i expects key=value, got ${JSON.stringify(pair)}`);
    const key = pair.slice(0, eq);
    const text = pair.slice(eq + 1);
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      // a plain string
    }
    out[key] = value;
  }
  return out;
}

/** Formats rows as an aligned text table. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/**
 * Formats an option value for display: strings as they are, everything else as JSON (which
 * `drover config set` accepts back).
 */
export function formatValue(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** "Process 42 finished [3]: message", the line a wait for a process ends with. */
export function describeEnd(p: Pick<ProcessRecord, 'id' | 'state' | 'exitStatus' | 'exitMessage'>): string {
  return (
    `Process ${p.id} ${p.state}` +
    (p.exitStatus !== null ? ` [${p.exitStatus}]` : '') +
    (p.exitMessage ? `: ${p.exitMessage}` : '')
  );
}
