/**
 * Progress of large transfers as log lines (the engine has no terminal): one when a blob starts,
 * one at each quarter, one when it is done, with the rate. Small blobs are not worth a line.
 */
import type { Logger } from '../logger.js';
import { shortDigest } from './digest.js';
import type { TransferProgress } from './types.js';

/** "A few MB": below this a transfer is over before anyone would look at its progress. */
export const PROGRESS_THRESHOLD_BYTES = 4 * 1024 * 1024;

export function logTransferProgress(logger: Logger, threshold = PROGRESS_THRESHOLD_BYTES): (event: TransferProgress) => void {
  const started = new Map<string, { at: number; quarter: number }>();
  return (event) => {
    if (event.total < threshold) return;
    const key = `${event.direction} ${event.digest}`;
    const blob = shortDigest(event.digest);
    const verb = event.direction === 'download' ? 'downloading' : 'uploading';
    switch (event.phase) {
      case 'start':
        started.set(key, { at: performance.now(), quarter: 0 });
        logger.info({ blob: event.digest, bytes: event.total }, `${verb} ${blob} (${event.total} bytes)`);
        return;
      case 'progress': {
        const state = started.get(key);
        if (!state) return;
        const quarter = Math.floor((event.done / event.total) * 4);
        if (quarter > state.quarter && quarter < 4) {
          state.quarter = quarter;
          logger.info({ blob: event.digest, done: event.done, bytes: event.total }, `${verb} ${blob}: ${quarter * 25}%`);
        }
        return;
      }
      case 'done': {
        const state = started.get(key);
        started.delete(key);
        const ms = state ? Math.max(1, Math.round(performance.now() - state.at)) : undefined;
        const rate = ms === undefined ? '' : `, ${((event.total / ms) * 1000 / (1024 * 1024)).toFixed(1)} MiB/s`;
        logger.info({ blob: event.digest, bytes: event.total, ms }, `${verb} ${blob}: done${rate}`);
        return;
      }
      case 'skipped':
        logger.info({ blob: event.digest, bytes: event.total }, `${blob} not ${event.direction === 'download' ? 'downloaded: already stored' : 'uploaded: already on the registry'}`);
        return;
    }
  };
}
