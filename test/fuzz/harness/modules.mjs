/**
 * Random valid modules from a seed: binaryen's translate-to-fuzz (`wasm-opt -ttf`) turns random
 * bytes into a valid module with exports, then a small binary post-pass makes it deployable.
 *
 * - binaryen (108, Debian's) makes every module import `fuzzing-support.log-*` functions, which
 *   the engine refuses at deploy; its own `--remove-imports` pass fails validation when the
 *   reference-types feature takes a `ref.func` of an import. So the imports are turned into
 *   defined functions here instead: their type indices and bodies (a zero of each result) are put
 *   first in the function and code sections, where the imports were in the function index space,
 *   so no function index anywhere in the module moves.
 * - One module in four gets a string-ABI entry (`fuzz_string`, with `__heap_base` exported)
 *   that passes its input pointer and length to one of the module's exports and answers a window
 *   of memory; about one in seven a WASI command (`_start`, the first log import renamed to
 *   `wasi_snapshot_preview1.proc_exit`, so that logging an i32 exits with it). The rest are called
 *   through the numeric ABI, one deploy per export, most with probes added (exports that grow,
 *   load and store memory, clear and set table entries, set globals, and `fuzz_state`, one look at
 *   all of it), so that a call can change state and a later one on the same instance see it.
 * - memory.size and memory.grow are put into half the generated bodies (injectMemoryOps), and NaN
 *   global initialisers replaced in most (withoutNanGlobals): see there why.
 *
 * Features are those V8 in Node 20 runs without flags and the engine's code walk knows.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Rng } from './prng.mjs';
import { ByteReader, encodeU32, parseModule, sections } from './dist.mjs';

const BASE_FEATURES = ['sign-ext', 'mutable-globals', 'nontrapping-float-to-int', 'multivalue'];
/**
 * With their odds. Kept below one half for the two that make most modules unfit for reuse (a
 * mutable v128 global; passive data segments), which would leave the reuse side little to do.
 */
const OPTIONAL_FEATURES = [
  ['bulk-memory', 0.3],
  ['simd', 0.25],
  ['tail-call', 0.5],
  ['exception-handling', 0.4],
];
/**
 * Rare. threads: binaryen then makes the memory shared, and the engine refuses to reuse such
 * instances. reference-types: binaryen 108 types references as GC-era subtypes, which V8 in
 * Node 20 mostly refuses (such modules are skipped and counted).
 */
const RARE_FEATURES = ['threads', 'reference-types'];

const SECTION = { type: 1, import: 2, function: 3, global: 6, export: 7, code: 10 };
const TYPE_CODE = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b, funcref: 0x70, externref: 0x6f };
const encoder = new TextEncoder();

export const WASM_OPT = process.env.WASM_OPT ?? 'wasm-opt';
const WASM_DIS = process.env.WASM_DIS ?? 'wasm-dis';
const WASM_AS = process.env.WASM_AS ?? 'wasm-as';

/**
 * binaryen 108's generator never emits memory.size or memory.grow, the two instructions the
 * reuse rewrite (reuse/virtual-size.ts) replaces after walking every instruction of a body
 * (reuse/code-walk.ts). So, in half the modules, some `i32.const` operands inside function bodies
 * become `memory.size` or `memory.grow` (both give an i32, so the module stays valid), through
 * binaryen's own text form: the rewrite then has to walk SIMD, exception handling, tail calls and
 * the rest of what the generator made to find them.
 */
function injectMemoryOps(raw, flags, rng, workDir, seed) {
  const wasmIn = join(workDir, `inject-${seed}.wasm`);
  const watFile = join(workDir, `inject-${seed}.wat`);
  const wasmOut = join(workDir, `inject-${seed}.out.wasm`);
  try {
    writeFileSync(wasmIn, raw);
    const text = execFileSync(WASM_DIS, [...flags.filter((f) => f.startsWith('--enable-')), wasmIn], { stdio: 'pipe', maxBuffer: 64 << 20 }).toString('utf8');
    const odds = rng.pick([0.05, 0.2, 0.5]);
    let field = '';
    let injected = 0;
    const recent = ['', ''];
    const lines = text.split('\n').map((line) => {
      const top = /^ \((\w+)/.exec(line);
      if (top) field = top[1];
      const [twoBack, oneBack] = recent;
      recent.shift();
      recent.push(line.trim());
      if (field !== 'func' || top) return line;
      // The generator's hang limit: `global.set $g (i32.sub (global.get $g) (i32.const 1))` at every
      // loop and call. A grow answering -1 there would raise the limit and loop for ever.
      if (twoBack === '(i32.sub' && oneBack.startsWith('(global.get ')) return line;
      return line.replace(/\(i32\.const -?\d+\)/g, (constant) => {
        if (!rng.chance(odds)) return constant;
        injected++;
        return rng.pick(['(memory.size)', '(memory.grow (i32.const 0))', '(memory.grow (i32.const 1))', `(memory.grow ${constant})`]);
      });
    });
    if (injected === 0) return { bytes: raw, injected };
    writeFileSync(watFile, lines.join('\n'));
    execFileSync(WASM_AS, [...flags.filter((f) => f.startsWith('--enable-')), watFile, '-o', wasmOut], { stdio: 'pipe' });
    return { bytes: new Uint8Array(readFileSync(wasmOut)), injected };
  } catch {
    return { bytes: raw, injected: 0 };
  } finally {
    for (const f of [wasmIn, watFile, wasmOut]) rmSync(f, { force: true });
  }
}

/**
 * @typedef {{ name: string, entrypoint: string | undefined, abi: 'numeric' | 'string' | 'wasi' }} Target
 * @typedef {{ seed: number, bytes: Uint8Array, features: string[], variant: string, memoryLimitMb: number,
 *             targets: Target[] } | { seed: number, skipped: string }} GeneratedModule
 */

/** The module of `seed`; `workDir` holds binaryen's input and output files for a moment. */
export function generateModule(seed, workDir) {
  const rng = new Rng(seed);
  const inputLength = rng.chance(0.2) ? rng.int(8, 256) : rng.int(256, 6000);
  const input = rng.bytes(inputLength);
  const features = [...BASE_FEATURES, ...OPTIONAL_FEATURES.filter(([, odds]) => rng.chance(odds)).map(([f]) => f), ...RARE_FEATURES.filter(() => rng.chance(0.08))];
  const flags = features.map((f) => `--enable-${f}`);
  // Without it binaryen also emits loads and stores past the memory, which the reuse rewrite must keep trapping.
  if (rng.chance(0.5)) flags.push('--no-fuzz-oob');
  mkdirSync(workDir, { recursive: true });
  const inFile = join(workDir, `ttf-${seed}.dat`);
  const outFile = join(workDir, `ttf-${seed}.wasm`);
  writeFileSync(inFile, input);
  let raw;
  try {
    execFileSync(WASM_OPT, [...flags, '-ttf', inFile, '-o', outFile], { stdio: 'pipe' });
    raw = new Uint8Array(readFileSync(outFile));
  } catch (err) {
    return { seed, skipped: `wasm-opt failed: ${String(err.stderr ?? err).slice(0, 200)}` };
  } finally {
    rmSync(inFile, { force: true });
    rmSync(outFile, { force: true });
  }
  let injected = 0;
  if (rng.chance(0.5)) ({ bytes: raw, injected } = injectMemoryOps(raw, flags, rng, workDir, seed));
  if (rng.chance(0.8)) raw = withoutNanGlobals(raw);
  const roll = rng.float();
  const variant = roll < 0.25 ? 'string' : roll < 0.4 ? 'wasi' : 'numeric';
  let made;
  try {
    made = finish(raw, variant, rng);
  } catch (err) {
    return { seed, skipped: `post-pass: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (typeof made === 'string') return { seed, skipped: made };
  if (!WebAssembly.validate(made.bytes)) return { seed, skipped: 'V8 does not validate the module binaryen made' };
  const m = parseModule(made.bytes);
  const initialPages = m.memories[0]?.min ?? 0;
  // The limit is never below the initial memory (deploy refuses that, which is not what is fuzzed here).
  const limitChoices = [1, 2, 4, 16, 64].filter((mb) => mb * 16 >= initialPages);
  const memoryLimitMb = limitChoices.length > 0 ? rng.pick(limitChoices) : Math.ceil(initialPages / 16);
  return { seed, bytes: made.bytes, features: [...flags], variant, memoryLimitMb, memoryPages: initialPages, injectedMemoryOps: injected, targets: made.targets };
}

/** Stubs the imports and adds the variant's entry; a string says why the module was not usable. */
function finish(raw, variant, rng) {
  const m = parseModule(raw);
  if (m.imports.some((i) => i.kind !== 'func')) return 'it imports something other than functions';
  const exported = m.exports.filter((e) => e.kind === 'func').map((e) => e.name);
  if (variant === 'numeric') {
    let bytes = stubImports(raw, m, 0);
    const names = [...exported];
    const probes = [];
    if (m.memories.length === 1 && rng.chance(0.9)) probes.push(...MEMORY_PROBES);
    if (firstTableType(raw) === 0x70 && rng.chance(0.9)) probes.push(...tableProbes(m, probes.length));
    if (rng.chance(0.9)) probes.push(...globalProbes(m));
    if (probes.length > 0) probes.push(stateProbe(m, firstTableType(raw) === 0x70));
    if (probes.length > 0) {
      bytes = appendFunctions(bytes, probes, undefined);
      names.push(...probes.map((p) => p.exportName));
    }
    return { bytes, targets: names.map((name) => ({ name, entrypoint: name, abi: 'numeric' })) };
  }
  const memory = m.exports.find((e) => e.kind === 'memory' && e.name === 'memory');
  if (!memory || m.memories.length !== 1) return 'no exported memory for a string or WASI entry';
  const callable = m.exports.filter((e) => e.kind === 'func');
  if (callable.length === 0) return 'no function export to call from an entry';
  const target = rng.pick(callable);
  const targetType = m.types[m.functionTypes[target.index]];
  if (variant === 'string') {
    const bytes = stubImports(raw, m, 0);
    const heapBase = rng.pick([0, 16, 1024, m.memories[0].min * 65536]);
    const memoryBytes = m.memories[0].min * 65536;
    const echo = rng.chance(0.5);
    const window = Math.min(memoryBytes, rng.pick([0, 16, 64, 512]));
    const body = [
      ...grow(rng),
      ...targetType.params.flatMap((p) => argument(p, rng.int(0, 1))),
      0x10, ...encodeU32(target.index),
      ...targetType.results.map(() => 0x1a),
      // Echo: the input as the export left it; else a window at the start of memory.
      ...(echo ? [0x20, 0, 0x20, 1] : [0x41, 0, 0x41, ...encodeS32(window)]),
    ];
    const added = appendFunctions(bytes, [{ type: { params: ['i32', 'i32'], results: ['i32', 'i32'] }, body, exportName: 'fuzz_string' }], heapBase);
    return { bytes: added, targets: [{ name: 'fuzz_string', entrypoint: 'fuzz_string', abi: 'string' }] };
  }
  // WASI: the first import, when it is log-i32, becomes proc_exit.
  const first = m.imports[0];
  const firstType = first && m.types[first.typeIndex];
  if (!first || first.name !== 'log-i32' || firstType.params.join() !== 'i32' || firstType.results.length !== 0) {
    return 'no log-i32 import to make proc_exit of';
  }
  if (m.exports.some((e) => e.name === '_start')) return 'it exports _start already';
  const bytes = stubImports(raw, m, 1);
  const body = [
    ...grow(rng),
    ...targetType.params.flatMap((p) => constant(p, rng)),
    0x10, ...encodeU32(target.index),
    ...targetType.results.map(() => 0x1a),
  ];
  const added = appendFunctions(bytes, [{ type: { params: [], results: [] }, body, exportName: '_start' }], undefined);
  return { bytes: added, targets: [{ name: '_start', entrypoint: undefined, abi: 'wasi' }] };
}

/**
 * The generator often starts float globals as NaNs with a payload, and the engine does not reuse
 * instances of such modules (JavaScript cannot put a NaN's bits back: reuse/snapshot.ts). Most
 * modules get 1.5 instead (same length, in place), so that most are reused; the rest keep them.
 */
function withoutNanGlobals(bytes) {
  const globals = sections(bytes).find((s) => s.id === SECTION.global);
  if (!globals) return bytes;
  const out = bytes.slice();
  const r = new ByteReader(out, globals.bodyStart, globals.end);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const n = r.u32();
  for (let i = 0; i < n; i++) {
    r.u8(); // value type (a one-byte type: binaryen 108 with these features)
    r.u8(); // mutability
    const op = r.u8();
    if (op === 0x43 && Number.isNaN(view.getFloat32(r.pos, true))) view.setFloat32(r.pos, 1.5, true);
    if (op === 0x44 && Number.isNaN(view.getFloat64(r.pos, true))) view.setFloat64(r.pos, 1.5, true);
    // Skip the rest of the constant expression up to its end.
    switch (op) {
      case 0x41: r.skipSignedLeb(5); break;
      case 0x42: r.skipSignedLeb(10); break;
      case 0x43: r.skip(4); break;
      case 0x44: r.skip(8); break;
      case 0x23: case 0xd2: r.u32(); break;
      case 0xd0: r.u8(); break;
      case 0xfd: r.u32(); r.skip(16); break;
      default: return bytes; // anything else: leave the module as it is
    }
    if (r.u8() !== 0x0b) return bytes;
  }
  return out;
}

/** The element type of the module's first table when it defines one (0x70: funcref). */
function firstTableType(bytes) {
  const table = sections(bytes).find((s) => s.id === 4);
  if (!table) return undefined;
  const r = new ByteReader(bytes, table.bodyStart, table.end);
  return r.u32() > 0 ? r.u8() : undefined;
}

/**
 * Probes of table 0 (funcref): its size, growth, entries set to null or to a function, copies,
 * and indirect calls through it, so that reuse must put every entry back (reuse/snapshot.ts) or
 * discard an instance whose table grew. `at` is where these come in the appended list (the
 * indirect call uses the type appended with fuzz_table_null, (i32) -> ()).
 */
function tableProbes(m, at) {
  const func = m.exports.find((e) => e.kind === 'func');
  const probes = [
    { exportName: 'fuzz_table_size', type: { params: [], results: ['i32'] }, body: [0xfc, 16, 0] },
    { exportName: 'fuzz_table_grow', type: { params: ['i32'], results: ['i32'] }, body: [0xd0, 0x70, 0x20, 0, 0xfc, 15, 0] },
    { exportName: 'fuzz_table_null', type: { params: ['i32'], results: [] }, body: [0x20, 0, 0xd0, 0x70, 0x26, 0] },
    { exportName: 'fuzz_table_is_null', type: { params: ['i32'], results: ['i32'] }, body: [0x20, 0, 0x25, 0, 0xd1] },
    { exportName: 'fuzz_table_copy', type: { params: ['i32', 'i32', 'i32'], results: [] }, body: [0x20, 0, 0x20, 1, 0x20, 2, 0xfc, 14, 0, 0] },
  ];
  const clear = [];
  for (let i = 0; i < 16; i++) clear.push(0x41, i, 0xfc, 16, 0, 0x49, 0x04, 0x40, 0x41, i, 0xd0, 0x70, 0x26, 0, 0x0b);
  probes.push(
    { exportName: 'fuzz_table_state', type: { params: [], results: ['i32'] }, body: tableState() },
    { exportName: 'fuzz_table_clear', type: { params: [], results: [] }, body: clear },
  );
  const nullType = m.types.length + at + 2;
  probes.push({ exportName: 'fuzz_call_indirect', type: { params: ['i32'], results: [] }, body: [0x20, 0, 0x20, 0, 0x11, ...encodeU32(nullType), 0] });
  // ref.func needs a function declared by an export (or a segment): an exported one is.
  if (func) probes.push({ exportName: 'fuzz_table_set_func', type: { params: ['i32'], results: [] }, body: [0x20, 0, 0xd2, ...encodeU32(func.index), 0x26, 0] });
  return probes;
}

/** (i32) bit i: entry i of table 0 is null, for the first 16 entries it has; above them, its size. */
function tableState() {
  const state = [0xfc, 16, 0];
  for (let i = 0; i < 16; i++) state.push(0x41, 1, 0x74, 0x41, i, 0xfc, 16, 0, 0x49, 0x04, 0x7f, 0x41, i, 0x25, 0, 0xd1, 0x05, 0x41, 0, 0x0b, 0x72);
  return state;
}

const VALUE_BITS = { i32: [0xad], i64: [], f32: [0xbc, 0xad], f64: [0xbd] };

/**
 * `fuzz_state`, the one look at everything a call can leave behind, folded into an i64 (acc =
 * rotl(acc, 7) ^ part): every mutable numeric global's bits, table 0's entries and size, and what
 * growing memory by one page answers and finds in the last 8 bytes (zero in a fresh instance,
 * whatever an earlier call wrote in the pages it grew).
 */
function stateProbe(m, table) {
  const fold = (part) => [0x42, 7, 0x89, ...part, 0x85];
  const body = [0x42, 0];
  for (const g of m.globals.map((g, index) => ({ ...g, index })).filter((g) => g.mutable && g.type in VALUE_BITS)) {
    body.push(...fold([0x23, ...encodeU32(g.index), ...VALUE_BITS[g.type]]));
  }
  if (table) body.push(...fold([...tableState(), 0xad]));
  if (m.memories.length === 1) {
    body.push(...fold([0x41, 1, 0x40, 0, 0xac]));
    body.push(...fold([0x3f, 0, 0x04, 0x7e, 0x3f, 0, 0x41, 0x10, 0x74, 0x41, 8, 0x6b, 0x29, 0, 0, 0x05, 0x42, 0, 0x0b]));
  }
  return { exportName: 'fuzz_state', type: { params: [], results: ['i64'] }, body };
}

/** Probes of the mutable numeric globals: set them all from one i64, read each of the first few. */
function globalProbes(m) {
  const CONVERT = { i32: [0xa7], i64: [], f32: [0xb4], f64: [0xb9] };
  const mutable = m.globals.map((g, index) => ({ ...g, index })).filter((g) => g.mutable && g.type in CONVERT);
  if (mutable.length === 0) return [];
  const set = mutable.flatMap((g) => [0x20, 0, ...CONVERT[g.type], 0x24, ...encodeU32(g.index)]);
  // Every mutable numeric global's bits, floats reinterpreted (a NaN's payload included), folded
  // into one i64: acc = rotl(acc, 7) ^ bits.
  const BITS = { i32: [0xad], i64: [], f32: [0xbc, 0xad], f64: [0xbd] };
  const digest = [0x42, 0, ...mutable.flatMap((g) => [0x42, 7, 0x89, 0x23, ...encodeU32(g.index), ...BITS[g.type], 0x85])];
  return [
    { exportName: 'fuzz_globals_digest', type: { params: [], results: ['i64'] }, body: digest },
    { exportName: 'fuzz_globals_set', type: { params: ['i64'], results: [] }, body: set },
    ...mutable.slice(0, 3).map((g) => ({ exportName: `fuzz_global_${g.index}`, type: { params: [], results: [g.type] }, body: [0x23, ...encodeU32(g.index)] })),
  ];
}

/** Half the time, an entry first grows memory by 0 to 3 pages (through the virtual size, when rewritten). */
function grow(rng) {
  return rng.chance(0.5) ? [0x41, rng.int(0, 3), 0x40, 0, 0x1a] : [];
}

/** An argument of type `type` made from local `local` (the string entry's pointer or length). */
function argument(type, local) {
  switch (type) {
    case 'i32':
      return [0x20, local];
    case 'i64':
      return [0x20, local, 0xad];
    case 'f32':
      return [0x20, local, 0xb2];
    case 'f64':
      return [0x20, local, 0xb7];
    default:
      return zero(type);
  }
}

function constant(type, rng) {
  const value = rng.pick([0, 1, -1, 7, 65536, 0x7fffffff]);
  switch (type) {
    case 'i32':
      return [0x41, ...encodeS32(value)];
    case 'i64':
      return [0x41, ...encodeS32(value), 0xac];
    case 'f32':
      return [0x41, ...encodeS32(value), 0xb2];
    case 'f64':
      return [0x41, ...encodeS32(value), 0xb7];
    default:
      return zero(type);
  }
}

function zero(type) {
  switch (type) {
    case 'i32':
      return [0x41, 0];
    case 'i64':
      return [0x42, 0];
    case 'f32':
      return [0x43, 0, 0, 0, 0];
    case 'f64':
      return [0x44, 0, 0, 0, 0, 0, 0, 0, 0];
    case 'v128':
      return [0xfd, 0x0c, ...new Array(16).fill(0)];
    case 'funcref':
      return [0xd0, 0x70];
    case 'externref':
      return [0xd0, 0x6f];
    default:
      throw new Error(`no zero for ${type}`);
  }
}

/**
 * The module with its imports after the first `keep` made defined functions (returning zeros);
 * the kept import 0 is renamed to WASI's proc_exit. Imports come first in the function index
 * space and the stubs become the first defined functions, so every index stays where it was.
 */
function stubImports(bytes, m, keep) {
  const stubbed = m.imports.slice(keep);
  if (stubbed.length === 0 && keep === 0) return bytes;
  const spans = sections(bytes);
  const bodies = new Map();
  const kept = m.imports.slice(0, keep).map((imp) => [
    ...name('wasi_snapshot_preview1'), ...name('proc_exit'), 0x00, ...encodeU32(imp.typeIndex),
  ]);
  bodies.set(SECTION.import, kept.length === 0 ? null : [...encodeU32(kept.length), ...kept.flat()]);
  const fn = spans.find((s) => s.id === SECTION.function);
  const code = spans.find((s) => s.id === SECTION.code);
  if (!fn || !code) throw new Error('no function or code section');
  bodies.set(SECTION.function, prepend(bytes, fn, stubbed.map((imp) => encodeU32(imp.typeIndex))));
  bodies.set(SECTION.code, prepend(bytes, code, stubbed.map((imp) => {
    const body = [0x00, ...m.types[imp.typeIndex].results.flatMap(zero), 0x0b];
    return [...encodeU32(body.length), ...body];
  })));
  return rebuild(bytes, spans, bodies, new Map());
}

/**
 * Appends functions ({ type, body, exportName }, bodies without locals), each exported, and, when
 * `heapBase` is given, an immutable i32 global exported as `__heap_base`.
 */
function appendFunctions(bytes, functions, heapBase) {
  const m = parseModule(bytes);
  const spans = sections(bytes);
  const find = (id) => spans.find((s) => s.id === id);
  const bodies = new Map();
  const typeEntries = functions.map(({ type }) => [
    0x60, ...encodeU32(type.params.length), ...type.params.map((t) => TYPE_CODE[t]),
    ...encodeU32(type.results.length), ...type.results.map((t) => TYPE_CODE[t]),
  ]);
  bodies.set(SECTION.type, append(bytes, find(SECTION.type), typeEntries));
  bodies.set(SECTION.function, append(bytes, find(SECTION.function), functions.map((_, i) => encodeU32(m.types.length + i))));
  bodies.set(SECTION.code, append(bytes, find(SECTION.code), functions.map(({ body }) => {
    const full = [0x00, ...body, 0x0b];
    return [...encodeU32(full.length), ...full];
  })));
  const exports = functions.map(({ exportName }, i) => [...name(exportName), 0x00, ...encodeU32(m.functionTypes.length + i)]);
  const inserted = new Map();
  if (heapBase !== undefined) {
    const global = [0x7f, 0x00, 0x41, ...encodeS32(heapBase), 0x0b];
    const globals = find(SECTION.global);
    if (globals) bodies.set(SECTION.global, append(bytes, globals, [global]));
    else inserted.set(SECTION.export, [SECTION.global, [...encodeU32(1), ...global]]);
    exports.push([...name('__heap_base'), 0x03, ...encodeU32(m.globals.length)]);
  }
  bodies.set(SECTION.export, append(bytes, find(SECTION.export), exports));
  return rebuild(bytes, spans, bodies, inserted);
}

/**
 * Probes of memory 0 for the numeric ABI: binaryen 108's generator never emits memory.grow or
 * memory.size, which the reuse rewrite (reuse/virtual-size.ts) replaces, so these do, and load
 * and store at addresses the caller picks (around the memory's edges: see differential.mjs).
 */
const MEMORY_PROBES = [
  { exportName: 'fuzz_grow', type: { params: ['i32'], results: ['i32'] }, body: [0x20, 0, 0x40, 0] },
  { exportName: 'fuzz_size', type: { params: [], results: ['i32'] }, body: [0x3f, 0] },
  { exportName: 'fuzz_load', type: { params: ['i32'], results: ['i64'] }, body: [0x20, 0, 0x29, 0, 0] },
  { exportName: 'fuzz_store', type: { params: ['i32', 'i64'], results: [] }, body: [0x20, 0, 0x20, 1, 0x37, 0, 0] },
  // Grows by its argument & 3, then loads just below the new size: what an earlier call stored there must be gone.
  {
    exportName: 'fuzz_grow_load',
    type: { params: ['i32'], results: ['i64'] },
    body: [0x20, 0, 0x41, 3, 0x71, 0x40, 0, 0x1a, 0x3f, 0, 0x41, 0x10, 0x74, 0x41, 8, 0x6b, 0x29, 0, 0],
  },
  // Grows by its argument & 3, then stores just below the new size: the page an earlier call grew must read as zeros.
  {
    exportName: 'fuzz_grow_store',
    type: { params: ['i32', 'i64'], results: ['i32'] },
    body: [0x20, 0, 0x41, 3, 0x71, 0x40, 0, 0x1a, 0x3f, 0, 0x41, 0x10, 0x74, 0x41, 8, 0x6b, 0x20, 1, 0x37, 0, 0, 0x3f, 0],
  },
];

/** A section body with entries put before (prepend) or after (append) the existing ones. */
function prepend(bytes, s, entries) {
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  const count = r.u32();
  return [...encodeU32(count + entries.length), ...entries.flat(), ...bytes.subarray(r.pos, s.end)];
}

function append(bytes, s, entries) {
  if (!s) throw new Error('a section to append to is missing');
  const r = new ByteReader(bytes, s.bodyStart, s.end);
  const count = r.u32();
  return [...encodeU32(count + entries.length), ...bytes.subarray(r.pos, s.end), ...entries.flat()];
}

/**
 * The module with the bodies of some sections replaced (null: removed), and new sections
 * inserted before the section whose id keys them.
 */
function rebuild(bytes, spans, bodies, inserted) {
  const chunks = [bytes.subarray(0, 8)];
  for (const s of spans) {
    const before = s.id === 0 ? undefined : inserted.get(s.id);
    if (before) chunks.push([before[0], ...encodeU32(before[1].length)], before[1]);
    const body = s.id === 0 ? undefined : bodies.get(s.id);
    if (body === null) continue;
    if (body === undefined) chunks.push(bytes.subarray(s.start, s.end));
    else chunks.push([s.id, ...encodeU32(body.length)], body);
  }
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function name(text) {
  const raw = encoder.encode(text);
  return [...encodeU32(raw.length), ...raw];
}

function encodeS32(value) {
  const out = [];
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}
