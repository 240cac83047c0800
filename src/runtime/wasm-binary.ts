/**
 * A small, hand-written reader of a core module's binary: just the sections deploy needs to decide
 * the ABI and check imports (types, imports, functions, memories, globals, exports), plus the
 * rewrites the runtime does (capping memory and table maxima). It is a security boundary, so it trusts no
 * length or count and fails with INVALID_FUNCTION_IMAGE on anything it cannot read. The code
 * section is skipped by its size: instruction validation is WebAssembly.validate's job.
 */
import { wasmBinaryKind } from '../wasm-preamble.js';
import { EngineError } from '../errors.js';
import { ByteReader, MalformedBinary, encodeU32 } from './byte-reader.js';
import { WASM_MAX_PAGES } from './wasm-api.js';

export type WasmValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref';
export type ExternKind = 'func' | 'table' | 'memory' | 'global' | 'tag';

export interface FuncType {
  params: WasmValType[];
  results: WasmValType[];
}

export interface Limits {
  min: number;
  max: number | undefined;
  shared: boolean;
  /** memory64: min/max are then u64 (read as Numbers, rounded past 2^53); the runtime refuses these. */
  is64: boolean;
}

export interface GlobalType {
  type: WasmValType;
  mutable: boolean;
}

export interface WasmImport {
  module: string;
  name: string;
  kind: ExternKind;
  /** For functions (and tags): the index into `types`. */
  typeIndex?: number;
  /** For memories. */
  limits?: Limits;
  /** For globals. */
  global?: GlobalType;
}

export interface WasmExport {
  name: string;
  kind: ExternKind;
  index: number;
}

export interface ParsedModule {
  types: FuncType[];
  imports: WasmImport[];
  /** Type index of every function in the function index space (imported ones first). */
  functionTypes: number[];
  /** Every memory in the memory index space (imported ones first). */
  memories: Limits[];
  /** Every global in the global index space (imported ones first). */
  globals: GlobalType[];
  exports: WasmExport[];
}

export { wasmBinaryKind, type WasmBinaryKind } from '../wasm-preamble.js';

const VAL_TYPES: Record<number, WasmValType> = {
  0x7f: 'i32',
  0x7e: 'i64',
  0x7d: 'f32',
  0x7c: 'f64',
  0x7b: 'v128',
  0x70: 'funcref',
  0x6f: 'externref',
};

const EXTERN_KINDS: ExternKind[] = ['func', 'table', 'memory', 'global', 'tag'];

export const SECTION = { type: 1, import: 2, function: 3, table: 4, memory: 5, global: 6, export: 7, element: 9, code: 10, data: 11 } as const;

export interface SectionSpan {
  id: number;
  /** Offset of the id byte. */
  start: number;
  /** Offsets of the contents. */
  bodyStart: number;
  end: number;
}

/** Walks the section headers; each section's size is checked against the input. */
export function sections(bytes: Uint8Array): SectionSpan[] {
  const r = new ByteReader(bytes, 8);
  const out: SectionSpan[] = [];
  while (!r.done) {
    const start = r.pos;
    const id = r.u8();
    const size = r.u32();
    const bodyStart = r.pos;
    r.skip(size);
    out.push({ id, start, bodyStart, end: r.pos });
  }
  return out;
}

export function valType(r: ByteReader): WasmValType {
  const at = r.pos;
  const code = r.u8();
  const type = VAL_TYPES[code];
  if (!type) r.fail(`unsupported value type 0x${code.toString(16)}`, at);
  return type;
}

export function limits(r: ByteReader): Limits {
  const at = r.pos;
  const flags = r.u8();
  if (flags > 0x07) r.fail(`unsupported limits flags 0x${flags.toString(16)}`, at);
  const is64 = (flags & 0x04) !== 0;
  const read = (): number => (is64 ? Number(r.u64()) : r.u32());
  const min = read();
  const max = (flags & 0x01) !== 0 ? read() : undefined;
  return { min, max, shared: (flags & 0x02) !== 0, is64 };
}

export function globalType(r: ByteReader): GlobalType {
  const type = valType(r);
  const at = r.pos;
  const mut = r.u8();
  if (mut > 1) r.fail('bad global mutability', at);
  return { type, mutable: mut === 1 };
}

export function tableType(r: ByteReader): { element: WasmValType; limits: Limits } {
  return { element: valType(r), limits: limits(r) };
}

/** Skips the immediate of i32/i64/f32/f64.const; false for any other opcode. */
export function skipNumericConst(r: ByteReader, op: number): boolean {
  switch (op) {
    case 0x41: // i32.const
      r.skipSignedLeb(5);
      return true;
    case 0x42: // i64.const
      r.skipSignedLeb(10);
      return true;
    case 0x43: // f32.const
      r.skip(4);
      return true;
    case 0x44: // f64.const
      r.skip(8);
      return true;
    default:
      return false;
  }
}

/** Skips a constant expression (global initialisers): the few opcodes allowed there, up to `end`. */
export function skipConstExpr(r: ByteReader): void {
  for (;;) {
    const at = r.pos;
    const op = r.u8();
    if (skipNumericConst(r, op)) continue;
    switch (op) {
      case 0x0b: // end
        return;
      case 0x23: // global.get
      case 0xd2: // ref.func
        r.u32();
        break;
      case 0xd0: // ref.null
        r.u8();
        break;
      case 0x6a: case 0x6b: case 0x6c: // i32.add/sub/mul (extended-const)
      case 0x7c: case 0x7d: case 0x7e: // i64.add/sub/mul
        break;
      case 0xfd: // v128.const is the only SIMD op allowed in a constant expression
        if (r.u32() !== 12) r.fail('unsupported instruction in a constant expression', at);
        r.skip(16);
        break;
      default:
        r.fail(`unsupported instruction 0x${op.toString(16)} in a constant expression`, at);
    }
  }
}

function parseTypes(r: ByteReader, m: ParsedModule): void {
  const n = r.count(3);
  for (let i = 0; i < n; i++) {
    const at = r.pos;
    const form = r.u8();
    // 0x60 is a function type; anything else is a GC-proposal type, which Node 20 does not enable.
    if (form !== 0x60) r.fail(`unsupported type form 0x${form.toString(16)}`, at);
    const params = Array.from({ length: r.count() }, () => valType(r));
    const results = Array.from({ length: r.count() }, () => valType(r));
    m.types.push({ params, results });
  }
}

function parseImports(r: ByteReader, m: ParsedModule): void {
  const n = r.count(4);
  for (let i = 0; i < n; i++) {
    const module = r.name();
    const name = r.name();
    const at = r.pos;
    const kind = EXTERN_KINDS[r.u8()];
    if (!kind) r.fail('bad import kind', at);
    const imp: WasmImport = { module, name, kind };
    switch (kind) {
      case 'func':
        imp.typeIndex = r.u32();
        m.functionTypes.push(imp.typeIndex);
        break;
      case 'table':
        tableType(r);
        break;
      case 'memory':
        imp.limits = limits(r);
        m.memories.push(imp.limits);
        break;
      case 'global':
        imp.global = globalType(r);
        m.globals.push(imp.global);
        break;
      case 'tag':
        r.u8(); // attribute
        imp.typeIndex = r.u32();
        break;
    }
    m.imports.push(imp);
  }
}

function parseExports(r: ByteReader, m: ParsedModule): void {
  const n = r.count(3);
  for (let i = 0; i < n; i++) {
    const name = r.name();
    const at = r.pos;
    const kind = EXTERN_KINDS[r.u8()];
    if (!kind) r.fail('bad export kind', at);
    m.exports.push({ name, kind, index: r.u32() });
  }
}

/** Reads one section's body, requiring that the reader ends exactly at the section's end. */
export function readSection(bytes: Uint8Array, s: SectionSpan, read: (r: ByteReader) => void): void {
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  read(r);
  if (!r.done) r.fail('section has trailing bytes');
}

/** Runs a binary reader; a MalformedBinary becomes INVALID_FUNCTION_IMAGE. */
export function wrap<T>(what: () => T): T {
  try {
    return what();
  } catch (err) {
    if (err instanceof MalformedBinary) {
      throw new EngineError('INVALID_FUNCTION_IMAGE', `malformed WebAssembly module: ${err.message}`, { cause: err });
    }
    throw err;
  }
}

/** Parses a core module's interface. Throws INVALID_FUNCTION_IMAGE when it cannot be read. */
export function parseModule(bytes: Uint8Array): ParsedModule {
  if (wasmBinaryKind(bytes) !== 'module') {
    throw new EngineError('INVALID_FUNCTION_IMAGE', 'not a core WebAssembly module');
  }
  return wrap(() => {
    const m: ParsedModule = { types: [], imports: [], functionTypes: [], memories: [], globals: [], exports: [] };
    for (const s of sections(bytes)) {
      switch (s.id) {
        case SECTION.type:
          readSection(bytes, s, (r) => parseTypes(r, m));
          break;
        case SECTION.import:
          readSection(bytes, s, (r) => parseImports(r, m));
          break;
        case SECTION.function:
          readSection(bytes, s, (r) => {
            const n = r.count();
            for (let i = 0; i < n; i++) m.functionTypes.push(r.u32());
          });
          break;
        case SECTION.memory:
          readSection(bytes, s, (r) => {
            const n = r.count(2);
            for (let i = 0; i < n; i++) m.memories.push(limits(r));
          });
          break;
        case SECTION.global:
          readSection(bytes, s, (r) => {
            const n = r.count(3);
            for (let i = 0; i < n; i++) {
              m.globals.push(globalType(r));
              skipConstExpr(r);
            }
          });
          break;
        case SECTION.export:
          readSection(bytes, s, (r) => parseExports(r, m));
          break;
        default:
          // Custom, table, start, element, code, data, data count, tag: not needed here.
          break;
      }
    }
    return m;
  });
}

/** The type of the function an export names, or undefined when it is not a (well-typed) function. */
export function exportedFunctionType(m: ParsedModule, exp: WasmExport): FuncType | undefined {
  if (exp.kind !== 'func') return undefined;
  const typeIndex = m.functionTypes[exp.index];
  return typeIndex === undefined ? undefined : m.types[typeIndex];
}

export function formatFuncType(t: FuncType): string {
  return `(${t.params.join(', ')}) -> (${t.results.join(', ')})`;
}

function encodeLimits(l: Limits): number[] {
  const flags = (l.max === undefined ? 0 : 0x01) | (l.shared ? 0x02 : 0);
  return [flags, ...encodeU32(l.min), ...(l.max === undefined ? [] : encodeU32(l.max))];
}

const MIB_PAGES = 16;

/**
 * Returns the module with each memory it defines capped at `maxPages` (declared maximum or not):
 * that is how memory_limit_mb is enforced, since memory.grow past a maximum returns -1 as the
 * WebAssembly spec says, with no host check on the hot path. A memory whose initial size already
 * exceeds the cap is refused (INVALID_FUNCTION_IMAGE). Imported memories are not touched: analysis
 * refuses modules that import one. Returns the input itself when nothing needs changing.
 */
export function withMemoryMaximum(bytes: Uint8Array, maxPages: number): Uint8Array {
  const cap = Math.min(Math.max(0, Math.floor(maxPages)), WASM_MAX_PAGES);
  if (wasmBinaryKind(bytes) !== 'module') {
    throw new EngineError('INVALID_FUNCTION_IMAGE', 'not a core WebAssembly module');
  }
  return wrap(() => {
    const section = sections(bytes).find((s) => s.id === SECTION.memory);
    if (!section) return bytes;
    const memories: Limits[] = [];
    readSection(bytes, section, (r) => {
      const n = r.count(2);
      for (let i = 0; i < n; i++) memories.push(limits(r));
    });
    let changed = false;
    const capped = memories.map((l) => {
      if (l.is64) throw new EngineError('INVALID_FUNCTION_IMAGE', '64-bit memories (memory64) are not supported');
      if (l.min > cap) {
        throw new EngineError(
          'INVALID_FUNCTION_IMAGE',
          `the module's initial memory (${l.min} pages, ${(l.min / MIB_PAGES).toFixed(2)} MiB) exceeds its memory limit of ${cap} pages (${(cap / MIB_PAGES).toFixed(2)} MiB)`,
        );
      }
      if (l.max !== undefined && l.max <= cap) return l;
      changed = true;
      return { ...l, max: cap };
    });
    if (!changed) return bytes;
    return replaceSection(bytes, section, SECTION.memory, [...encodeU32(capped.length), ...capped.flatMap(encodeLimits)]);
  });
}

/** The reference type bytes a table section may hold (Node 20: funcref and externref). */
const REF_TYPE_BYTES: Partial<Record<WasmValType, number>> = { funcref: 0x70, externref: 0x6f };

/**
 * Returns the module with the entries of the tables it defines capped at `maxEntries` in all:
 * table entries are memory the engine allocates for the guest (a V8 heap object per instance) that
 * memory_limit_mb does not count, so without a cap a module could make every sandbox allocate
 * gigabytes. A module whose tables' initial entries already exceed the cap is refused
 * (INVALID_FUNCTION_IMAGE); otherwise each table's maximum is lowered so that their sum stays
 * within the cap (the room left is shared evenly; most modules have one table, which gets it all),
 * and table.grow past a maximum returns -1 as the WebAssembly spec says. Imported tables are not
 * touched: analysis refuses modules that import one. Returns the input itself when nothing needs
 * changing.
 */
export function withTableMaximum(bytes: Uint8Array, maxEntries: number): Uint8Array {
  const cap = Math.max(0, Math.floor(maxEntries));
  if (wasmBinaryKind(bytes) !== 'module') {
    throw new EngineError('INVALID_FUNCTION_IMAGE', 'not a core WebAssembly module');
  }
  return wrap(() => {
    const section = sections(bytes).find((s) => s.id === SECTION.table);
    if (!section) return bytes;
    const tables: { element: WasmValType; limits: Limits }[] = [];
    readSection(bytes, section, (r) => {
      const n = r.count(2);
      for (let i = 0; i < n; i++) {
        // 0x40 0x00 starts a table with an initialiser (typed function references): not in Node 20.
        if (bytes[r.pos] === 0x40) r.fail('tables with an initialiser are not supported');
        const at = r.pos;
        const table = tableType(r);
        if (REF_TYPE_BYTES[table.element] === undefined) r.fail(`a table of ${table.element}`, at);
        tables.push(table);
      }
    });
    let initial = 0;
    for (const t of tables) {
      if (t.limits.is64 || t.limits.shared) throw new EngineError('INVALID_FUNCTION_IMAGE', 'the module declares a table of an unsupported kind (64-bit or shared)');
      initial += t.limits.min;
    }
    if (initial > cap) {
      throw new EngineError(
        'INVALID_FUNCTION_IMAGE',
        `the module's tables have ${initial} initial entries in all, more than the limit of ${cap} table entries per module (--max-table-entries)`,
      );
    }
    const share = Math.floor((cap - initial) / Math.max(1, tables.length));
    let changed = false;
    const capped = tables.map((t) => {
      const max = t.limits.min + share;
      if (t.limits.max !== undefined && t.limits.max <= max) return t;
      changed = true;
      return { ...t, limits: { ...t.limits, max } };
    });
    if (!changed) return bytes;
    const body = [...encodeU32(capped.length), ...capped.flatMap((t) => [REF_TYPE_BYTES[t.element] as number, ...encodeLimits(t.limits)])];
    return replaceSection(bytes, section, SECTION.table, body);
  });
}

/** The module with one section's contents replaced by `body` (its size header written anew). */
function replaceSection(bytes: Uint8Array, section: { start: number; end: number }, id: number, body: number[]): Uint8Array {
  const header = [id, ...encodeU32(body.length)];
  const out = new Uint8Array(bytes.length - (section.end - section.start) + header.length + body.length);
  out.set(bytes.subarray(0, section.start), 0);
  out.set(header, section.start);
  out.set(body, section.start + header.length);
  out.set(bytes.subarray(section.end), section.start + header.length + body.length);
  return out;
}
