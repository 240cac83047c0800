/**
 * Deploy-time inspection of a module (SPEC §3): is it valid, which ABI does it speak, which export
 * is called, and does it import only what the engine provides. Everything a module could be
 * refused for is found here, so that an invocation never discovers it.
 */
import { EngineError } from '../errors.js';
import type { ModuleAnalysis, ValType } from './types.js';
import { WASI_MODULE, WASI_SIGNATURES } from './wasi/signatures.js';
import { wasm } from './wasm-api.js';
import {
  exportedFunctionType,
  formatFuncType,
  parseModule,
  wasmBinaryKind,
  type FuncType,
  type ParsedModule,
  type WasmExport,
  type WasmImport,
} from './wasm-binary.js';

export interface AnalyzeOptions {
  /** The function's name: the default entry export. */
  functionName: string;
  /** Omitted: decided from the module's imports. */
  wasiCap?: boolean;
  /** The export to call instead of the one named like the function. */
  entrypoint?: string;
}

import { COMPONENTS_UNSUPPORTED } from '../wasm-preamble.js';

export { COMPONENTS_UNSUPPORTED };

const NUMERIC: ReadonlySet<string> = new Set<ValType>(['i32', 'i64', 'f32', 'f64']);

const refuse = (message: string): EngineError => new EngineError('INVALID_FUNCTION_IMAGE', message);

function sameType(a: FuncType, b: FuncType): boolean {
  const eq = (x: string[], y: string[]): boolean => x.length === y.length && x.every((v, i) => v === y[i]);
  return eq(a.params, b.params) && eq(a.results, b.results);
}

/** Fails unless every import is a WASI preview1 function of its proper type (for a WASI module). */
function checkImports(m: ParsedModule, wasi: boolean): void {
  const describe = (imp: WasmImport): string =>
    `${imp.module}.${imp.name} (${imp.kind === 'func' ? 'function' : imp.kind})`;
  for (const imp of m.imports) {
    if (imp.module === WASI_MODULE && imp.kind === 'func' && Object.hasOwn(WASI_SIGNATURES, imp.name)) {
      if (!wasi) throw refuse(`the module imports ${describe(imp)} but is not run with WASI`);
      const expected = WASI_SIGNATURES[imp.name] as FuncType;
      const actual = imp.typeIndex === undefined ? undefined : m.types[imp.typeIndex];
      if (!actual || !sameType(actual, expected)) {
        throw refuse(
          `the module imports ${describe(imp)} with type ${actual ? formatFuncType(actual) : '?'}, but WASI preview1 defines it as ${formatFuncType(expected)}`,
        );
      }
      continue;
    }
    const offered =
      imp.module === WASI_MODULE
        ? `it is not a ${WASI_MODULE} function`
        : wasi
          ? `only ${WASI_MODULE} functions are provided`
          : 'a module without WASI gets no imports at all';
    throw refuse(`the module imports ${describe(imp)}, which the engine does not provide (${offered})`);
  }
}

function findExport(m: ParsedModule, name: string): WasmExport | undefined {
  return m.exports.find((e) => e.name === name);
}

/**
 * The export a non-WASI function calls: `entrypoint` if given, else the one named like the
 * function. When neither is given/present and the module exports exactly one function, that one
 * is used: a single-function module needs no naming convention (README documents this).
 */
function entryExport(m: ParsedModule, opts: AnalyzeOptions): WasmExport {
  const wanted = opts.entrypoint ?? opts.functionName;
  const named = findExport(m, wanted);
  if (named) {
    if (named.kind !== 'func') throw refuse(`the export ${wanted} is a ${named.kind}, not a function`);
    return named;
  }
  const functions = m.exports.filter((e) => e.kind === 'func');
  if (opts.entrypoint === undefined && functions.length === 1) return functions[0] as WasmExport;
  const list = functions.map((e) => e.name).join(', ') || 'none';
  throw refuse(
    `the module does not export a function named ${wanted}${opts.entrypoint === undefined ? ' (set entrypoint to choose another export)' : ''}; its function exports: ${list}`,
  );
}

function checkValid(bytes: Uint8Array): void {
  switch (wasmBinaryKind(bytes)) {
    case 'component':
      throw refuse(`the binary is a component: ${COMPONENTS_UNSUPPORTED}`);
    case 'unknown-version':
      throw refuse('the file is a WebAssembly binary of an unsupported version');
    case 'not-wasm':
      throw refuse('the file is not a WebAssembly module (no \\0asm header)');
    case 'module':
      break;
  }
  if (wasm.validate(bytes)) return;
  // validate() says only no; compiling the (invalid) module once more gets V8's reason.
  let reason = 'it does not validate';
  try {
    new wasm.Module(bytes);
  } catch (err) {
    if (err instanceof Error) reason = err.message.replace(/^WebAssembly\.Module\(\): /, '');
  }
  throw refuse(`the file is not a valid WebAssembly module: ${reason}`);
}

/** Throws INVALID_FUNCTION_IMAGE (422) with a message naming what is wrong. */
export function analyzeModule(bytes: Uint8Array, opts: AnalyzeOptions): ModuleAnalysis {
  checkValid(bytes);
  const m = parseModule(bytes);
  const exports = m.exports.map((e) => e.name);
  const wasiImport = m.imports.find((imp) => imp.module === WASI_MODULE);
  const start = findExport(m, '_start');
  const hasStart = start?.kind === 'func';

  let wasi: boolean;
  if (opts.wasiCap === true) {
    if (!hasStart) throw refuse('wasi_cap is true but the module does not export a _start function (a WASI command needs one)');
    wasi = true;
  } else if (opts.wasiCap === false) {
    if (wasiImport) {
      throw refuse(`wasi_cap is false but the module imports WASI (${wasiImport.module}.${wasiImport.name}); deploy it with wasi_cap true`);
    }
    wasi = false;
  } else {
    if (wasiImport && !hasStart) {
      throw refuse('the module imports WASI but does not export _start: only WASI commands are supported, not reactors or libraries');
    }
    wasi = wasiImport !== undefined;
  }
  checkImports(m, wasi);

  if (wasi) {
    // A WASI command is always entered through _start; `entrypoint` does not apply to it.
    const type = exportedFunctionType(m, start as WasmExport);
    if (!type || type.params.length > 0 || type.results.length > 0) {
      throw refuse(`_start must have type () -> (), not ${type ? formatFuncType(type) : 'unknown'}`);
    }
    if (findExport(m, 'memory')?.kind !== 'memory') throw refuse('a WASI module must export its memory as memory');
    return { abi: 'wasi', entrypoint: '_start', exports, wasiCap: true };
  }

  const entry = entryExport(m, opts);
  const type = exportedFunctionType(m, entry);
  if (!type) throw refuse(`the export ${entry.name} has no function type`);
  const stringShape =
    sameType(type, { params: ['i32', 'i32'], results: ['i32', 'i32'] }) &&
    findExport(m, 'memory')?.kind === 'memory' &&
    isI32Global(m, findExport(m, '__heap_base'));
  if (stringShape) return { abi: 'string', entrypoint: entry.name, exports, wasiCap: false };
  if ([...type.params, ...type.results].every((t) => NUMERIC.has(t))) {
    return {
      abi: 'numeric',
      entrypoint: entry.name,
      exports,
      wasiCap: false,
      params: type.params as ValType[],
      results: type.results as ValType[],
    };
  }
  throw refuse(
    `the export ${entry.name} has type ${formatFuncType(type)}, which fits no calling convention: the string ABI wants (i32, i32) -> (i32, i32) with memory and __heap_base exported, the numeric ABI only i32/i64/f32/f64`,
  );
}

function isI32Global(m: ParsedModule, exp: WasmExport | undefined): boolean {
  return exp?.kind === 'global' && m.globals[exp.index]?.type === 'i32';
}
