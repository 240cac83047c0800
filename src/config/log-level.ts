/**
 * Log levels from LOG_LEVEL (`debug`) or the historical RUST_LOG form (`crate=level` pairs,
 * e.g. `wasm_engine=debug,hyper=info`; a bare level applies to everything).
 */
import { EngineError } from '../errors.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const ALIASES: Record<string, LogLevel> = { warning: 'warn', off: 'silent' };

function asLevel(word: string): LogLevel | undefined {
  const w = word.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(w)) return w as LogLevel;
  return ALIASES[w];
}

export function parseLogLevel(raw: string, setting: string): LogLevel {
  let bare: LogLevel | undefined;
  let ours: LogLevel | undefined;
  for (const part of raw.split(',')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    const level = asLevel(eq < 0 ? part : part.slice(eq + 1));
    if (!level) {
      throw new EngineError(
        'INVALID_REQUEST',
        `invalid setting ${setting}=${JSON.stringify(raw)}: expected a level (${LOG_LEVELS.join(', ')}) or crate=level pairs`,
      );
    }
    if (eq < 0) bare = level;
    else if (['wasm_engine', 'wasm-engine', 'wasmengine'].includes(part.slice(0, eq).trim())) ours = level;
  }
  return ours ?? bare ?? 'info';
}
