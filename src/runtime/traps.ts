/**
 * Turns what a guest threw into the error a caller sees: a trap is FUNCTION_FAILED naming its kind
 * (from V8's RuntimeError messages, which are stable wording of the spec's trap conditions);
 * anything the engine itself threw stays what it was, and an unknown failure is INTERNAL.
 */
import { EngineError } from '../errors.js';
import { wasm } from './wasm-api.js';

const TRAP_KINDS: [RegExp, string][] = [
  [/unreachable/i, 'unreachable'],
  [/memory access out of bounds|out of bounds memory/i, 'out-of-bounds memory access'],
  [/divide by zero|remainder by zero/i, 'integer divide by zero'],
  [/divide result unrepresentable|integer overflow/i, 'integer overflow'],
  [/float unrepresentable|invalid conversion/i, 'invalid conversion to integer'],
  [/table index is out of bounds|undefined element|out of bounds table/i, 'undefined table element'],
  [/signature mismatch|null function/i, 'indirect call type mismatch'],
  [/dereferencing a null|null pointer|null reference/i, 'null reference'],
  [/data segment|element segment/i, 'out-of-bounds segment access'],
];

/** The spec name of a trap from its RuntimeError message ("unreachable", "integer overflow", …). */
export function trapKind(message: string): string {
  for (const [pattern, kind] of TRAP_KINDS) if (pattern.test(message)) return kind;
  return message;
}

export const STDERR_TAIL_BYTES = 1024;

/** Appends the tail of stderr (when there is any) to a failure message. */
export function withStderr(message: string, stderrTail: string): string {
  const tail = stderrTail.trimEnd();
  return tail === '' ? message : `${message}; stderr: ${tail}`;
}

/** Maps anything thrown while running a guest to an EngineError. */
export function guestFailure(err: unknown, stderrTail = ''): EngineError {
  if (err instanceof EngineError) return err;
  const fail = (message: string): EngineError =>
    new EngineError('FUNCTION_FAILED', withStderr(message, stderrTail), { cause: err });
  if (err instanceof wasm.RuntimeError) return fail(`the function trapped: ${trapKind(err.message)}`);
  if (err instanceof RangeError) {
    // V8 reports a guest's stack overflow as a RangeError, and a failed memory allocation likewise.
    if (/call stack/i.test(err.message)) return fail('the function trapped: stack overflow (call stack exhausted)');
    if (/memory|allocat/i.test(err.message)) return fail(`the function ran out of memory: ${err.message}`);
  }
  // A WebAssembly exception (exception-handling proposal) thrown by the guest and never caught.
  if (err instanceof Object && err.constructor?.name === 'Exception' && !(err instanceof Error)) {
    return fail('the function threw an uncaught WebAssembly exception');
  }
  if (err instanceof wasm.LinkError) {
    return new EngineError('INTERNAL', `the module could not be instantiated: ${err.message}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new EngineError('INTERNAL', `unexpected failure while running the function: ${message}`, { cause: err });
}
