/**
 * Instance reuse (see instance-runner.ts) must read and reset every piece of an instance's state
 * from JavaScript, but a module exports only what its toolchain chose: Rust's `__stack_pointer`,
 * for one, is a mutable global that is never exported. This rewrite adds exports, under reserved
 * names, of the memory, of every mutable global the module defines and of every table; nothing
 * else in the module changes, and a guest cannot observe its own export list.
 *
 * It also decides whether reuse can be exact at all, and says why not when it cannot: state that
 * JavaScript cannot reset (a passive data or element segment, which `data.drop`/`elem.drop` remove
 * for the rest of the instance's life), state it cannot read (a v128 global), or state that is not
 * the instance's own (anything imported but functions). Hand-written over the same bounds-checked
 * reader as wasm-binary.ts: the input is untrusted and this is the module the engine then runs.
 */
import { EngineError } from '../../errors.js';
import { ByteReader, encodeU32 } from '../byte-reader.js';
import type { VirtualSize } from './virtual-size.js';
import { SECTION, globalType, limits, readSection, sections, skipConstExpr, tableType, valType, wrap } from '../wasm-binary.js';

/** Export names under which the rewritten module shows its state. */
export interface ExposedState {
  memory: string | undefined;
  /** Every mutable global the module defines. */
  globals: string[];
  /** Every table, unless no code of the module can change one (then none: there is nothing to restore). */
  tables: string[];
  /** Set when memory.size and memory.grow were made virtual (virtual-size.ts): a grown memory can then be reset. */
  virtualSize?: VirtualSize;
}

export type ExposeResult = { bytes: Uint8Array; state: ExposedState } | { reason: string };

/** Reserved prefix: a guest's own export is refused for reuse if it starts with it. */
export const EXPORT_PREFIX = '\u0000wasm-engine:';

/**
 * Tables are restored entry by entry (about 25 ns each); past this many entries a fresh instance
 * is cheaper than the check, so such modules are not reused.
 */
export const MAX_REUSED_TABLE_ENTRIES = 4096;

const KIND = { func: 0, table: 1, memory: 2, global: 3 } as const;
const encoder = new TextEncoder();

class NotReusable {
  constructor(readonly reason: string) {}
}

const notReusable = (reason: string): never => {
  throw new NotReusable(reason);
};

function encodeName(name: string): number[] {
  const bytes = encoder.encode(name);
  return [...encodeU32(bytes.length), ...bytes];
}

/** Skips one element segment, failing when it is passive. */
function checkElementSegment(r: ByteReader): void {
  const flags = r.u32();
  if (flags > 7) r.fail(`unknown element segment flags ${flags}`);
  // Bit 0: passive or declarative; bit 1 with bit 0: declarative (dropped at instantiation).
  if ((flags & 0b011) === 0b001) notReusable('it has a passive element segment (elem.drop cannot be undone)');
  const explicitTable = (flags & 0b010) !== 0 && (flags & 0b001) === 0;
  const active = (flags & 0b001) === 0;
  const expressions = (flags & 0b100) !== 0;
  if (explicitTable) r.u32();
  if (active) skipConstExpr(r);
  // Flags 0 and 4 (active, table 0) have no element kind or type byte; the others do.
  if (flags !== 0 && flags !== 4) {
    if (expressions) valType(r);
    else r.u8();
  }
  const n = r.count();
  for (let i = 0; i < n; i++) {
    if (expressions) skipConstExpr(r);
    else r.u32();
  }
}

function checkDataSegment(r: ByteReader): void {
  const flags = r.u32();
  if (flags === 1) notReusable('it has a passive data segment (data.drop cannot be undone)');
  if (flags === 2) r.u32();
  else if (flags !== 0) r.fail(`unknown data segment flags ${flags}`);
  skipConstExpr(r);
  r.skip(r.u32());
}

/**
 * Returns the module with its state exported, or why its instances cannot be reused exactly.
 * Throws INVALID_FUNCTION_IMAGE only for a binary it cannot read (analysis has read it before).
 */
export function exposeState(bytes: Uint8Array, virtualSize?: VirtualSize, writesTables = true): ExposeResult {
  return wrap(() => {
    try {
      return expose(bytes, virtualSize, writesTables);
    } catch (err) {
      if (err instanceof NotReusable) return { reason: err.reason };
      throw err;
    }
  });
}

function expose(bytes: Uint8Array, virtualSize: VirtualSize | undefined, writesTables: boolean): ExposeResult {
  const all = sections(bytes);
  let memories = 0;
  let tables = 0;
  let tableEntries = 0;
  const mutableGlobals: number[] = [];
  let globalIndex = 0;
  const existing: string[] = [];
  let exportCount = 0;
  let exportSection: (typeof all)[number] | undefined;

  for (const s of all) {
    switch (s.id) {
      case SECTION.import:
        readSection(bytes, s, (r) => {
          const n = r.count(4);
          for (let i = 0; i < n; i++) {
            r.name();
            r.name();
            const kind = r.u8();
            if (kind !== KIND.func) notReusable('it imports state (only imported functions can be reused around)');
            r.u32();
          }
        });
        break;
      case SECTION.table:
        readSection(bytes, s, (r) => {
          const n = r.count(3);
          for (let i = 0; i < n; i++) {
            // 0x40 0x00 starts a table with an initialiser (typed function references): not in Node 20.
            if (bytes[r.pos] === 0x40) notReusable('it declares a table with an initialiser');
            tableEntries += tableType(r).limits.min;
            tables++;
          }
        });
        break;
      case SECTION.memory:
        readSection(bytes, s, (r) => {
          const n = r.count(2);
          for (let i = 0; i < n; i++) {
            const l = limits(r);
            if (l.shared) notReusable('its memory is shared');
            if (l.is64) notReusable('its memory is 64-bit');
            memories++;
          }
        });
        break;
      case SECTION.global:
        readSection(bytes, s, (r) => {
          const n = r.count(3);
          for (let i = 0; i < n; i++) {
            const g = globalType(r);
            skipConstExpr(r);
            if (g.mutable) {
              if (g.type === 'v128') notReusable('it has a mutable v128 global, which JavaScript cannot read');
              mutableGlobals.push(globalIndex);
            }
            globalIndex++;
          }
        });
        break;
      case SECTION.export:
        exportSection = s;
        readSection(bytes, s, (r) => {
          exportCount = r.count(3);
          for (let i = 0; i < exportCount; i++) {
            existing.push(r.name());
            r.u8();
            r.u32();
          }
        });
        break;
      case SECTION.element:
        readSection(bytes, s, (r) => {
          const n = r.count();
          for (let i = 0; i < n; i++) checkElementSegment(r);
        });
        break;
      case SECTION.data:
        readSection(bytes, s, (r) => {
          const n = r.count();
          for (let i = 0; i < n; i++) checkDataSegment(r);
        });
        break;
      default:
        break;
    }
  }
  // The size rewrite's written map is the last memory, and the engine's own.
  if (virtualSize) memories -= 1;
  if (memories > 1) notReusable('it has more than one memory');
  // Tables no code can change stay as instantiation made them: nothing to check or restore.
  if (!writesTables) tables = 0;
  if (tableEntries > MAX_REUSED_TABLE_ENTRIES && tables > 0) {
    notReusable(`its tables hold ${tableEntries} entries (more than ${MAX_REUSED_TABLE_ENTRIES} to check after each call)`);
  }
  if (!exportSection) notReusable('it has no export section');
  const ours = (name: string): boolean => name === virtualSize?.size || name === virtualSize?.grow || name === virtualSize?.written;
  if (existing.some((name) => name.startsWith(EXPORT_PREFIX) && !ours(name))) notReusable('one of its exports uses the engine\'s reserved prefix');

  const state: ExposedState = { memory: undefined, globals: [], tables: [], ...(virtualSize ? { virtualSize } : {}) };
  const added: number[] = [];
  const add = (name: string, kind: number, index: number): string => {
    added.push(...encodeName(name), kind, ...encodeU32(index));
    return name;
  };
  if (memories === 1) state.memory = add(`${EXPORT_PREFIX}memory`, KIND.memory, 0);
  for (const index of mutableGlobals) state.globals.push(add(`${EXPORT_PREFIX}global:${index}`, KIND.global, index));
  for (let index = 0; index < tables; index++) state.tables.push(add(`${EXPORT_PREFIX}table:${index}`, KIND.table, index));
  if (added.length === 0) return { bytes, state };

  const section = exportSection as (typeof all)[number];
  // The old entries are kept byte for byte after the new count.
  const oldCount = new ByteReader(bytes, section.bodyStart, section.end);
  oldCount.u32();
  const entries = bytes.subarray(oldCount.pos, section.end);
  const count = encodeU32(exportCount + mutableGlobals.length + tables + (memories === 1 ? 1 : 0));
  const bodyLength = count.length + entries.length + added.length;
  const header = [SECTION.export, ...encodeU32(bodyLength)];
  const out = new Uint8Array(bytes.length - (section.end - section.start) + header.length + bodyLength);
  let at = 0;
  const put = (chunk: ArrayLike<number>): void => {
    out.set(chunk, at);
    at += chunk.length;
  };
  put(bytes.subarray(0, section.start));
  put(header);
  put(count);
  put(entries);
  put(added);
  put(bytes.subarray(section.end));
  if (at !== out.length) throw new EngineError('INTERNAL', 'export section rewrite miscounted');
  return { bytes: out, state };
}
