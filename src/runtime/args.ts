/**
 * Normalises an invocation's `args` (SPEC §2, §3) once, on the HTTP side, into the three forms
 * the ABIs consume, so the sandbox never sees raw request JSON.
 *
 * Decisions beyond the SPEC's letter:
 * - `args: null` is taken as omitted (many JSON clients send null for "nothing").
 * - A null value inside args is INVALID_ARGS, like a nested value: it is neither a string nor a
 *   number or boolean, and the historical engine (a map of strings) refused it too.
 * - An empty object is not positional (WASI argv is then `["{}"]`, as historically); an array is
 *   always positional, the empty array included (argv is then empty).
 */
import { EngineError } from '../errors.js';
import type { FunctionArgs } from './types.js';

const EMPTY: FunctionArgs = Object.freeze({ json: '{}', positional: null, values: [] }) as FunctionArgs;

/**
 * A scalar value as its argument text; anything else is INVALID_ARGS naming where it was: key `at`
 * of an object, or index `at` of an array (the name is built on that error path only).
 */
function valueText(value: unknown, at: string | number): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'boolean':
      // Their JSON text: 1.0 → "1", true → "true". JSON has no NaN/Infinity, so no odd spellings.
      return JSON.stringify(value);
    default: {
      const what = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : typeof value;
      const where = typeof at === 'number' ? `args[${at}]` : `args.${at}`;
      throw new EngineError('INVALID_ARGS', `${where} must be a string, number or boolean, not ${what}`);
    }
  }
}

function isPositionalKeys(keys: readonly string[]): boolean {
  return keys.length > 0 && keys.every((key, i) => key === String(i));
}

export function normalizeArgs(raw: unknown): FunctionArgs {
  if (raw === undefined || raw === null) return { ...EMPTY, values: [] };
  if (Array.isArray(raw)) {
    const values = raw.map((v, i) => valueText(v, i));
    return { json: JSON.stringify(values), positional: values, values };
  }
  if (typeof raw !== 'object') {
    throw new EngineError('INVALID_REQUEST', `args must be a JSON object or array, not ${typeof raw}`);
  }
  const keys = Object.keys(raw);
  const values: string[] = new Array<string>(keys.length);
  for (let i = 0; i < keys.length; i++) values[i] = valueText((raw as Record<string, unknown>)[keys[i]!], keys[i]!);
  // Built by hand rather than with JSON.stringify of a new object: assigning a key such as
  // "__proto__" to a fresh object would not create an own property and would drop it. A loop
  // rather than map and join: no closure or array per call.
  let json = '{';
  for (let i = 0; i < keys.length; i++) json += `${i === 0 ? '' : ','}${JSON.stringify(keys[i])}:${JSON.stringify(values[i])}`;
  json += '}';
  return { json, positional: isPositionalKeys(keys) ? values : null, values };
}
