/**
 * How a module is made ready for the pool: its memory and tables capped, rewritten for instance
 * reuse where that can be done, and compiled. Run in a preparation worker (prepare-worker.ts): on
 * a module of hundreds of megabytes the rewrites take seconds of CPU, which must not be taken from
 * the thread that answers requests.
 */
import { EngineError } from '../../errors.js';
import type { ExposeResult } from '../reuse/expose.js';
import { prepareForReuse } from '../reuse/prepare.js';
import { wasm } from '../wasm-api.js';
import { withMemoryMaximum, withTableMaximum } from '../wasm-binary.js';
import { inlineRefusal } from '../inline/eligibility.js';
import { injectPreemption } from '../preempt/inject.js';
import type { CompiledModule, ModuleCaps } from './prepare-protocol.js';

const PAGES_PER_MIB = 16;

/** Throws INVALID_FUNCTION_IMAGE for a module over a cap or that does not compile. */
export async function compileForPool(bytes: Uint8Array, caps: ModuleCaps): Promise<CompiledModule> {
  const capped = withTableMaximum(withMemoryMaximum(bytes, Math.floor(caps.memoryLimitMb * PAGES_PER_MIB)), caps.maxTableEntries);
  // Preemption checks first, so that the reuse rewrites export and restore their fuel counter too.
  // Checked, not trusted: a module the rewrite would break runs without checks (pool only).
  const preempt = injectPreemption(capped);
  const checked = 'bytes' in preempt && wasm.validate(preempt.bytes) ? preempt.bytes : undefined;
  const base = checked ?? capped;
  let exposed: ExposeResult;
  try {
    exposed = prepareForReuse(base);
  } catch (err) {
    // Analysis and the caps have read this binary already: never refuse a module for this.
    exposed = { reason: `its binary could not be read for reuse: ${err instanceof Error ? err.message : String(err)}` };
  }
  const binary = 'bytes' in exposed ? exposed.bytes : base;
  try {
    const module = await wasm.compile(binary);
    return {
      module,
      bytes: binary.byteLength,
      state: 'state' in exposed ? exposed.state : undefined,
      noReuse: 'reason' in exposed ? exposed.reason : undefined,
      notInline: inlineRefusal(capped, checked !== undefined),
    };
  } catch (err) {
    const reason = err instanceof Error ? err.message.replace(/^WebAssembly\.compile\(\): /, '') : String(err);
    throw new EngineError('INVALID_FUNCTION_IMAGE', `the module does not compile: ${reason}`, { cause: err });
  }
}
