/**
 * Bounds-checked access to the guest's linear memory for host functions. Pointers arrive as
 * signed i32 JavaScript numbers and are read as unsigned; any range outside memory throws
 * GuestFault, which the host turns into EFAULT (the guest gets an errno, the engine no exception).
 * Views are taken afresh per host call because memory.grow detaches the old ArrayBuffer. When the
 * size the guest sees is smaller than the real memory (an instance reused after a call grew it,
 * reuse/virtual-size.ts), the views end at that size, so a pointer past it faults as it would in a
 * fresh instance. Every range checked is marked in the instance's written map, if it keeps one
 * (reuse/written-map.ts), read or written alike: a mark too many costs a chunk's restore, a mark
 * missing would leave a call's write for the next call to see.
 */
import type { WrittenMap } from '../reuse/written-map.js';
import type { WasmMemory } from '../wasm-api.js';

export class GuestFault {}

export class GuestMemory {
  readonly view: DataView;
  readonly bytes: Uint8Array;

  constructor(
    memory: WasmMemory | undefined,
    visibleBytes?: number,
    private readonly written?: WrittenMap,
  ) {
    // Before the instance exists (a start function calling WASI) there is no memory to reach.
    if (!memory) throw new GuestFault();
    const buffer = memory.buffer;
    const length = visibleBytes === undefined ? buffer.byteLength : Math.min(visibleBytes, buffer.byteLength);
    this.view = new DataView(buffer, 0, length);
    this.bytes = new Uint8Array(buffer, 0, length);
  }

  /** Checks that [ptr, ptr + len) lies in memory; returns ptr as unsigned. */
  check(ptr: number, len: number): number {
    const p = ptr >>> 0;
    if (len < 0 || p + len > this.bytes.length) throw new GuestFault();
    this.written?.mark(p, len);
    return p;
  }

  u8s(ptr: number, len: number): Uint8Array {
    const p = this.check(ptr, len);
    return this.bytes.subarray(p, p + len);
  }

  u16(ptr: number): number {
    return this.view.getUint16(this.check(ptr, 2), true);
  }

  u32(ptr: number): number {
    return this.view.getUint32(this.check(ptr, 4), true);
  }

  u64(ptr: number): bigint {
    return this.view.getBigUint64(this.check(ptr, 8), true);
  }

  setU8(ptr: number, value: number): void {
    this.view.setUint8(this.check(ptr, 1), value);
  }

  setU16(ptr: number, value: number): void {
    this.view.setUint16(this.check(ptr, 2), value, true);
  }

  setU32(ptr: number, value: number): void {
    this.view.setUint32(this.check(ptr, 4), value, true);
  }

  setU64(ptr: number, value: bigint): void {
    this.view.setBigUint64(this.check(ptr, 8), BigInt.asUintN(64, value), true);
  }

  fill(ptr: number, len: number, value = 0): void {
    this.u8s(ptr, len).fill(value);
  }
}
