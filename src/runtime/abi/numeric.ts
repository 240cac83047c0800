/**
 * SPEC §3c: args parsed as the entry's parameter types, results printed in decimal as the
 * WebAssembly JavaScript API gives them (i32 as a signed Number, i64 as a signed BigInt).
 */
import { EngineError } from '../../errors.js';
import type { FunctionArgs, ValType } from '../types.js';
import type { AbiOutput } from './call.js';

const INTEGER = /^[+-]?\d+$/;
const I32_MIN = -(2n ** 31n);
const U32_MAX = 2n ** 32n - 1n;
const I64_MIN = -(2n ** 63n);
const U64_MAX = 2n ** 64n - 1n;

/**
 * One argument as a value of `type`. Integers take the signed and the unsigned range alike
 * (-2^31 … 2^32-1 for i32; the JS API wraps the upper half to negative, as the bits mean);
 * floats take any JavaScript number text ("1.5", "1e3", "-Infinity", "NaN", "0x10").
 * `where` names the argument in messages, e.g. "argument b of gcd"; it is a function because it
 * is needed only on the error path, and building it costs a JSON parse (argName).
 */
export function parseArg(text: string, type: ValType, where: string | (() => string)): number | bigint {
  const bad = (why: string): EngineError =>
    new EngineError('INVALID_ARGS', `${typeof where === 'string' ? where : where()} ${why}: ${JSON.stringify(text)}`);
  const trimmed = text.trim();
  const number = Number(trimmed);
  // Number('') is 0 and Number('abc') NaN: refuse both unless NaN was asked for by name.
  if (trimmed === '' || (Number.isNaN(number) && !/^[+-]?NaN$/.test(trimmed))) throw bad('is not a number');
  if (type === 'f32' || type === 'f64') return number;
  if (!INTEGER.test(trimmed)) throw bad(`is not an integer (${type})`);
  // The common case, a small integer, needs no BigInt.
  if (type === 'i32' && Number.isSafeInteger(number) && number >= -2147483648 && number <= 4294967295) return number | 0;
  const value = BigInt(trimmed);
  const [min, max] = type === 'i32' ? [I32_MIN, U32_MAX] : [I64_MIN, U64_MAX];
  if (value < min || value > max) throw bad(`is out of the ${type} range ${min} … ${max}`);
  return type === 'i32' ? Number(BigInt.asIntN(32, value)) : BigInt.asIntN(64, value);
}

/**
 * The name of argument `i` for messages: its key when args was an object, else its index.
 * Recovered from the JSON text only on this error path, so the hot path carries no key list
 * (re-parsing the JSON gives the keys in the same order the values were taken in).
 */
function argName(args: FunctionArgs, i: number): string {
  if (args.positional === null && args.json.startsWith('{')) {
    try {
      const key = Object.keys(JSON.parse(args.json) as object)[i];
      if (key !== undefined) return key;
    } catch {
      // not the JSON of an object after all: fall back to the index
    }
  }
  return String(i);
}

export function parseNumericArgs(args: FunctionArgs, params: readonly ValType[], entrypoint: string): (number | bigint)[] {
  const { values } = args;
  if (values.length !== params.length) {
    throw new EngineError(
      'INVALID_ARGS',
      `${entrypoint} takes ${params.length} argument${params.length === 1 ? '' : 's'} (${params.join(', ')}), got ${values.length}`,
    );
  }
  return values.map((text, i) => parseArg(text, params[i] as ValType, () => `argument ${argName(args, i)} of ${entrypoint}`));
}

function formatResult(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  throw new EngineError('INTERNAL', `unexpected result ${String(value)} from a numeric function`);
}

/** Calls the entry with parsed arguments; traps propagate to the caller (sandbox.ts maps them). */
export function callNumeric(exports: Readonly<Record<string, unknown>>, entrypoint: string, values: readonly (number | bigint)[]): AbiOutput {
  const result = (exports[entrypoint] as (...args: (number | bigint)[]) => unknown)(...values);
  // The JS API gives undefined for no result, the value for one, an array for several.
  const output = result === undefined ? '' : Array.isArray(result) ? result.map(formatResult).join(' ') : formatResult(result);
  return { output, stderr: '' };
}
