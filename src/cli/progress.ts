/**
 * Transfer progress for people. On a terminal, a blob of a few MB or more gets a bar redrawn in
 * place; anywhere else (a pipe, a CI log) each blob gets plain lines: when it starts, at each
 * quarter when large, and when done. Small blobs get one line.
 */
import type { TransferProgress } from '../registry/index.js';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** "A few MB": smaller transfers finish before a bar would say anything. */
export const BAR_THRESHOLD_BYTES = 4 * 1024 * 1024;
const REDRAW_MS = 100;
const BAR_WIDTH = 30;

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

function short(digest: string): string {
  return digest.slice(0, 'sha256:'.length + 12);
}

interface Transfer {
  startedAt: number;
  lastDraw: number;
  quarter: number;
}

export interface ProgressReporter {
  onProgress(event: TransferProgress): void;
}

export function createProgressReporter(
  stream: ProgressStream,
  options: { threshold?: number; now?: () => number } = {},
): ProgressReporter {
  const threshold = options.threshold ?? BAR_THRESHOLD_BYTES;
  const now = options.now ?? (() => performance.now());
  const tty = stream.isTTY === true;
  const transfers = new Map<string, Transfer>();

  const verb = (event: TransferProgress, done: boolean): string =>
    event.direction === 'upload' ? (done ? 'uploaded' : 'uploading') : done ? 'downloaded' : 'downloading';

  const rate = (event: TransferProgress, transfer: Transfer | undefined): string => {
    if (!transfer) return '';
    const seconds = Math.max(0.001, (now() - transfer.startedAt) / 1000);
    return `${formatBytes(event.done / seconds)}/s`;
  };

  const bar = (event: TransferProgress, transfer: Transfer): string => {
    const fraction = event.total === 0 ? 1 : Math.min(1, event.done / event.total);
    const filled = Math.round(fraction * BAR_WIDTH);
    const line =
      `${verb(event, false)} ${short(event.digest)} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ` +
      `${String(Math.floor(fraction * 100)).padStart(3)}% ${formatBytes(event.done)}/${formatBytes(event.total)} ${rate(event, transfer)}`;
    const columns = stream.columns ?? 80;
    // \r and "erase line" redraw in place; never wider than the terminal, or it would wrap.
    return `\r\x1b[2K${line.slice(0, Math.max(10, columns - 1))}`;
  };

  return {
    onProgress(event) {
      const key = `${event.direction} ${event.digest}`;
      const large = event.total >= threshold;
      switch (event.phase) {
        case 'skipped':
          stream.write(`${short(event.digest)} ${event.direction === 'upload' ? 'already on the registry' : 'already stored'}, not transferred\n`);
          return;
        case 'start': {
          const transfer = { startedAt: now(), lastDraw: 0, quarter: 0 };
          transfers.set(key, transfer);
          if (!large) return;
          if (tty) stream.write(bar(event, transfer));
          else stream.write(`${verb(event, false)} ${short(event.digest)} (${formatBytes(event.total)})\n`);
          return;
        }
        case 'progress': {
          const transfer = transfers.get(key);
          if (!transfer || !large) return;
          if (tty) {
            if (now() - transfer.lastDraw < REDRAW_MS) return;
            transfer.lastDraw = now();
            stream.write(bar(event, transfer));
            return;
          }
          const quarter = Math.floor((event.done / event.total) * 4);
          if (quarter > transfer.quarter && quarter < 4) {
            transfer.quarter = quarter;
            stream.write(`  ${short(event.digest)} ${quarter * 25}% (${formatBytes(event.done)} of ${formatBytes(event.total)})\n`);
          }
          return;
        }
        case 'done': {
          const transfer = transfers.get(key);
          transfers.delete(key);
          if (large && tty) stream.write(`${bar(event, transfer ?? { startedAt: now(), lastDraw: 0, quarter: 0 })}\n`);
          else stream.write(`${verb(event, true)} ${short(event.digest)} (${formatBytes(event.total)}${large ? `, ${rate(event, transfer)}` : ''})\n`);
          return;
        }
      }
    },
  };
}
