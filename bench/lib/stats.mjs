// Small helpers shared by the bench parts: medians, percentiles, formatting.

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

/** Times `fn` in `batches` batches of `n` calls after a warm-up; the median µs per call. */
export function microsPerCall(fn, n, batches = 7) {
  for (let i = 0; i < Math.min(n, 500); i++) fn();
  const runs = [];
  for (let b = 0; b < batches; b++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) fn();
    runs.push(((performance.now() - t) * 1000) / n);
  }
  return median(runs);
}

export const fmtUs = (us) => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(us < 10 ? 2 : 1)} µs`);
export const fmtMs = (ms) => `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
export const fmtMiB = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;
export const fmtRate = (r) => `${Math.round(r).toLocaleString('en-US')}/s`;

export const times = (x) => `${x.toFixed(x < 10 ? 2 : 1)}×`;
export const yes = (ok) => (ok ? 'yes' : 'NO');

/** A markdown table, columns padded to their widest cell. */
export function formatTable(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
