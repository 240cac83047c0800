/** The compact messages of the pool's hot path (src/runtime/pool/protocol.ts) stand for exactly what they encode. */
import { describe, expect, it } from 'vitest';
import type { SandboxCall } from '../../src/runtime/abi/call.js';
import { compactDone, compactInvoke, expandDone, expandInvoke } from '../../src/runtime/pool/protocol.js';

describe('compact pool messages', () => {
  const calls: [string, SandboxCall][] = [
    ['numeric', { abi: 'numeric', entrypoint: 'gcd', values: [12, 18n, -1.5], maxOutputBytes: 1024 }],
    ['string', { abi: 'string', entrypoint: 'handle', json: '{"a":"é"}', maxOutputBytes: 7 }],
    ['wasi, bare', { abi: 'wasi', argv: ['{}'], maxOutputBytes: 1 << 20 }],
    ['wasi, env and stdin', { abi: 'wasi', argv: ['a', 'b'], env: { K: 'v' }, stdin: new Uint8Array([1, 2, 3]), maxOutputBytes: 5 }],
    ['wasi, empty argv', { abi: 'wasi', argv: [], maxOutputBytes: 5 }],
  ];

  it.each(calls)('a %s call survives the round trip, through structured clone too', (_label, call) => {
    const compact = compactInvoke(7, 3, 42, 250, call);
    expect(Array.isArray(compact)).toBe(true);
    const expected = { type: 'invoke', id: 7, cell: 3, moduleId: 42, timeoutMs: 250, call };
    expect(expandInvoke(compact)).toEqual(expected);
    expect(expandInvoke(structuredClone(compact))).toEqual(expected);
  });

  it('a WASI call without env or stdin gets neither key back (the runner tells omitted from empty)', () => {
    const { call } = expandInvoke(compactInvoke(1, 0, 1, 10_000, { abi: 'wasi', argv: ['x'], maxOutputBytes: 9 }));
    expect(Object.keys(call).sort()).toEqual(['abi', 'argv', 'maxOutputBytes']);
  });

  it('an answer keeps its id, output, stderr and duration', () => {
    const result = { output: 'status 6', stderr: 'warn\n', durationMs: 0.25 };
    const compact = structuredClone(compactDone(9, result));
    expect(compact[0]).toBe(9);
    expect(expandDone(compact)).toEqual(result);
  });
});
