/**
 * Which modules may run on the thread that serves HTTP (inline/inline-executor.ts). The preemption
 * checks bound what guest code does there (preempt/inject.ts); what they cannot reach decides:
 *
 * - a start function runs inside instantiation, before any call's clock is armed: modules with
 *   one run in the pool only (its deadline backstop, terminating a worker, covers them);
 * - instantiation copies the data segments and a first snapshot scans the initial memory, outside
 *   any check: the module binary and its initial memory are bounded (INLINE_MAX_MODULE_BYTES,
 *   INLINE_MAX_INITIAL_PAGES);
 * - a shared memory lets `memory.atomic.wait` block the thread, and WASI `poll_oneoff` sleeps in
 *   the host (Atomics.wait): such modules run in the pool only;
 * - a module the check rewrite could not handle has no checks at all.
 *
 * Single large instructions (memory.fill, copy, init, grow) are stopped by the clock instead, per
 * call (INLINE_MAX_BULK_PAGES, inline-executor.ts).
 */
import { parseModule, sections } from '../wasm-binary.js';

export const INLINE_MAX_MODULE_BYTES = 8 * 1024 * 1024;
/** 16 MiB: a first snapshot scans the initial memory at about 1 ms per 4 MiB. */
export const INLINE_MAX_INITIAL_PAGES = 256;
const START_SECTION = 8;

/** Why the module must not run inline, or undefined when it may. `checked`: the preemption checks are in it. */
export function inlineRefusal(bytes: Uint8Array, checked: boolean): string | undefined {
  if (!checked) return 'its code could not be given preemption checks';
  if (bytes.byteLength > INLINE_MAX_MODULE_BYTES) return `its binary is larger than ${INLINE_MAX_MODULE_BYTES} bytes`;
  try {
    if (sections(bytes).some((s) => s.id === START_SECTION)) return 'it has a start function';
    const m = parseModule(bytes);
    if (m.memories.some((l) => l.shared)) return 'its memory is shared (memory.atomic.wait would block the thread)';
    if (m.memories.some((l) => l.min > INLINE_MAX_INITIAL_PAGES)) return `its initial memory is larger than ${INLINE_MAX_INITIAL_PAGES} pages`;
    if (m.imports.some((i) => i.kind === 'func' && i.name === 'poll_oneoff')) return 'it imports poll_oneoff (a WASI sleep blocks the thread)';
    if (m.imports.some((i) => i.kind === 'table' || i.kind === 'memory' || i.kind === 'global')) return 'it imports state';
  } catch (err) {
    return `its binary could not be read: ${err instanceof Error ? err.message : String(err)}`;
  }
  return undefined;
}
