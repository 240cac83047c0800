/**
 * The module a pool compiles when its instances may be reused: memory size made virtual where the
 * rewrite can do it (virtual-size.ts), so that calls which grow memory can still share an
 * instance, and the state exported (expose.ts). A module the size rewrite cannot handle is still
 * reused when it does not grow, as before.
 */
import { wasm } from '../wasm-api.js';
import { exposeState, type ExposeResult } from './expose.js';
import { virtualizeMemorySize } from './virtual-size.js';

export function prepareForReuse(bytes: Uint8Array): ExposeResult {
  const virtual = virtualizeMemorySize(bytes);
  // The rewrite is checked, not trusted: a module it would break is compiled as it came.
  if ('bytes' in virtual && wasm.validate(virtual.bytes)) {
    const exposed = exposeState(virtual.bytes, virtual.virtualSize, virtual.writesTables);
    if ('state' in exposed) return exposed;
  }
  return exposeState(bytes);
}
