import { describe, expect, it } from 'vitest';
import { ByteReader, MalformedBinary, encodeU32 } from '../../src/runtime/byte-reader.js';
import { wasm } from '../../src/runtime/wasm-api.js';
import { parseModule, wasmBinaryKind, withMemoryMaximum, withTableMaximum } from '../../src/runtime/wasm-binary.js';
import { engineError, wat, watText } from './support.js';

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const module = (...sections: number[][]): Uint8Array => new Uint8Array([...HEADER, ...sections.flat()]);
const section = (id: number, body: number[]): number[] => [id, ...encodeU32(body.length), ...body];

describe('ByteReader', () => {
  it('reads u32 LEB128 up to 2^32-1 and refuses longer or larger encodings', () => {
    expect(new ByteReader(new Uint8Array([0xe5, 0x8e, 0x26])).u32()).toBe(624485);
    expect(new ByteReader(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f])).u32()).toBe(0xffff_ffff);
    expect(() => new ByteReader(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x1f])).u32()).toThrow(MalformedBinary);
    expect(() => new ByteReader(new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x00])).u32()).toThrow(/too long|range/);
    expect(() => new ByteReader(new Uint8Array([0x80, 0x80])).u32()).toThrow(/unexpected end/);
  });

  it('round-trips encodeU32', () => {
    for (const v of [0, 1, 127, 128, 16_383, 16_384, 65_536, 0xffff_ffff]) {
      expect(new ByteReader(new Uint8Array(encodeU32(v))).u32()).toBe(v);
    }
  });

  it('never reads past its end', () => {
    const r = new ByteReader(new Uint8Array([1, 2, 3, 4]), 1, 3);
    expect(r.u8()).toBe(2);
    expect(() => r.take(2)).toThrow(/past the end/);
    expect(() => new ByteReader(new Uint8Array(2), 0, 5)).toThrow(MalformedBinary);
  });

  it('refuses a vector count larger than the bytes left', () => {
    expect(() => new ByteReader(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f, 0])).count()).toThrow(/count/);
  });
});

describe('wasmBinaryKind', () => {
  it('tells modules, components and other files apart', () => {
    expect(wasmBinaryKind(wat('numeric'))).toBe('module');
    expect(wasmBinaryKind(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]))).toBe('component');
    expect(wasmBinaryKind(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00]))).toBe('unknown-version');
    expect(wasmBinaryKind(new TextEncoder().encode('hello world'))).toBe('not-wasm');
    expect(wasmBinaryKind(new Uint8Array([0x00, 0x61, 0x73]))).toBe('not-wasm');
  });
});

describe('parseModule', () => {
  it('reads types, imports, functions, memories, globals and exports', () => {
    const m = parseModule(wat('wasi-hello'));
    expect(m.imports.map((i) => `${i.module}.${i.name}:${i.kind}`)).toEqual([
      'wasi_snapshot_preview1.fd_write:func',
      'wasi_snapshot_preview1.proc_exit:func',
    ]);
    expect(m.types[m.imports[0]!.typeIndex!]).toEqual({ params: ['i32', 'i32', 'i32', 'i32'], results: ['i32'] });
    expect(m.exports).toEqual([
      { name: 'memory', kind: 'memory', index: 0 },
      { name: '_start', kind: 'func', index: 2 },
    ]);
    expect(m.functionTypes).toHaveLength(3);
    expect(m.memories).toEqual([{ min: 1, max: undefined, shared: false, is64: false }]);
  });

  it('reads global types (through constant expressions) and memory limits', () => {
    const m = parseModule(wat('string'));
    const heapBase = m.exports.find((e) => e.name === '__heap_base')!;
    expect(heapBase.kind).toBe('global');
    expect(m.globals[heapBase.index]).toEqual({ type: 'i32', mutable: false });
    expect(parseModule(wat('grow-declared-max')).memories).toEqual([{ min: 1, max: 3, shared: false, is64: false }]);
    expect(parseModule(wat('import-memory')).imports[0]).toMatchObject({ kind: 'memory', limits: { min: 1 } });
  });

  it('refuses truncated and inconsistent binaries with INVALID_FUNCTION_IMAGE', () => {
    const good = wat('numeric');
    engineError(() => parseModule(good.subarray(0, good.length - 3)), 'INVALID_FUNCTION_IMAGE', /malformed/);
    // a section claiming more bytes than the file has
    engineError(() => parseModule(module([1, 0x7f])), 'INVALID_FUNCTION_IMAGE', /past the end/);
    // a type section whose contents end before its declared size
    engineError(() => parseModule(module(section(1, [0, 0]))), 'INVALID_FUNCTION_IMAGE', /trailing/);
    // an export name that is not UTF-8
    engineError(() => parseModule(module(section(7, [1, 1, 0xff, 0, 0]))), 'INVALID_FUNCTION_IMAGE', /UTF-8/);
    // an unknown import kind
    engineError(() => parseModule(module(section(2, [1, 1, 0x61, 1, 0x62, 9, 0]))), 'INVALID_FUNCTION_IMAGE', /import kind/);
    engineError(() => parseModule(new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00])), 'INVALID_FUNCTION_IMAGE');
  });
});

describe('withMemoryMaximum', () => {
  it('caps a memory that declares no maximum, and the result still validates', () => {
    const capped = withMemoryMaximum(wat('grow'), 16);
    expect(wasm.validate(capped)).toBe(true);
    expect(parseModule(capped).memories).toEqual([{ min: 1, max: 16, shared: false, is64: false }]);
    expect(parseModule(capped).exports.map((e) => e.name)).toEqual(['memory', 'grow', 'size']);
  });

  it('lowers a larger declared maximum and keeps a smaller one (returning the input itself)', () => {
    const declared = wat('grow-declared-max');
    expect(parseModule(withMemoryMaximum(declared, 2)).memories[0]!.max).toBe(2);
    expect(withMemoryMaximum(declared, 16)).toBe(declared);
  });

  it('never exceeds the 4 GiB a 32-bit memory can have', () => {
    expect(parseModule(withMemoryMaximum(wat('grow'), 1_000_000)).memories[0]!.max).toBe(65_536);
  });

  it('returns a module without memory unchanged', () => {
    const bytes = wat('numeric');
    expect(withMemoryMaximum(bytes, 1)).toBe(bytes);
  });

  it('refuses a module whose initial memory exceeds the limit', () => {
    engineError(() => withMemoryMaximum(wat('big-memory'), 16), 'INVALID_FUNCTION_IMAGE', /initial memory \(32 pages.*exceeds.*16 pages/);
  });
});

describe('withTableMaximum', () => {
  /** Each table's maximum (as the engine would instantiate it: V8 reports the table's maximum nowhere else). */
  const tableMaxima = (bytes: Uint8Array): (number | undefined)[] => {
    const instance = new wasm.Instance(new wasm.Module(bytes), {});
    const tables = Object.values(instance.exports) as { length: number; grow(delta: number): number }[];
    return tables.map((t) => {
      // Grow one entry at a time until refused: the length then is the maximum.
      for (let i = 0; i < 100; i++) {
        try {
          t.grow(1);
        } catch {
          return t.length;
        }
      }
      return undefined;
    });
  };

  it('lowers the maximum of a table that declares none, and the result validates', () => {
    const capped = withTableMaximum(watText('(module (table (export "t") 2 funcref))'), 10);
    expect(wasm.validate(capped)).toBe(true);
    expect(tableMaxima(capped)).toEqual([10]);
  });

  it('shares the room left between several tables, and keeps a smaller declared maximum (returning the input itself)', () => {
    const two = watText('(module (table (export "a") 2 funcref) (table (export "b") 4 externref))');
    expect(tableMaxima(withTableMaximum(two, 20))).toEqual([9, 11]);
    const declared = watText('(module (table (export "t") 1 5 funcref))');
    expect(withTableMaximum(declared, 10)).toBe(declared);
  });

  it('returns a module without tables unchanged', () => {
    const bytes = wat('numeric');
    expect(withTableMaximum(bytes, 1)).toBe(bytes);
  });

  it('refuses a module whose tables start with more entries than the cap, naming it', () => {
    const two = watText('(module (table 6 funcref) (table 5 funcref))');
    engineError(() => withTableMaximum(two, 10), 'INVALID_FUNCTION_IMAGE', /11 initial entries in all, more than the limit of 10 table entries per module/);
  });
});
