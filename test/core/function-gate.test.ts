import { describe, expect, it } from 'vitest';
import { FunctionGate, releaseGateCell, tryTakeGateCell } from '../../src/core/function-gate.js';
import { EngineError } from '../../src/errors.js';

const settle = async <T>(p: Promise<T>): Promise<'resolved' | string> =>
  p.then(
    () => 'resolved',
    (err: EngineError) => err.code,
  );

describe('FunctionGate', () => {
  it('lets `limit` in at once and queues the rest in order', async () => {
    const gate = new FunctionGate('f', 2, 10);
    expect(gate.tryEnter()).toBe(true);
    expect(gate.tryEnter()).toBe(true);
    expect(gate.tryEnter()).toBe(false);
    const order: number[] = [];
    const a = gate.enter().then(() => order.push(1));
    const b = gate.enter().then(() => order.push(2));
    expect(gate.waiting).toBe(2);
    gate.leave();
    await a;
    expect(order).toEqual([1]);
    expect(gate.active).toBe(2);
    gate.leave();
    await b;
    expect(order).toEqual([1, 2]);
    expect(gate.waiting).toBe(0);
  });

  it('does not let a newcomer pass those already waiting', async () => {
    const gate = new FunctionGate('f', 1, 10);
    expect(gate.tryEnter()).toBe(true);
    const waiting = gate.enter();
    gate.leave();
    // The freed slot went to the waiter, not to whoever asks next.
    expect(gate.tryEnter()).toBe(false);
    await waiting;
    expect(gate.active).toBe(1);
  });

  it('refuses with OVERLOADED and Retry-After beyond maxWaiting', async () => {
    const gate = new FunctionGate('f', 1, 1);
    gate.tryEnter();
    const first = gate.enter();
    const refused = gate.enter();
    await expect(refused).rejects.toMatchObject({ code: 'OVERLOADED', retryAfterSeconds: 1 });
    gate.leave();
    await first;
  });

  it('refuses with OVERLOADED a waiter whose time limit passes before a slot frees, and only that one', async () => {
    const gate = new FunctionGate('f', 1, 10);
    gate.tryEnter();
    const order: string[] = [];
    const patient = gate.enter(undefined, 60_000).then(() => order.push('patient'));
    const hasty = settle(gate.enter(undefined, 20)).then((outcome) => {
      order.push(outcome);
      return outcome;
    });
    expect(gate.waiting).toBe(2);
    expect(await hasty).toBe('OVERLOADED');
    await expect(gate.enter(undefined, 1)).rejects.toMatchObject({
      code: 'OVERLOADED',
      message: expect.stringMatching(/invocation of f could not start within its time limit of 1 ms/),
      retryAfterSeconds: 1,
    });
    expect(gate.waiting).toBe(1);
    gate.leave();
    await patient;
    expect(order).toEqual(['OVERLOADED', 'patient']);
    gate.leave();
  });

  it('pauses at 0: new callers and waiters get UNAVAILABLE, running ones finish', async () => {
    const gate = new FunctionGate('f', 1, 10);
    gate.tryEnter();
    const waiter = settle(gate.enter());
    gate.setLimit(0);
    expect(await waiter).toBe('UNAVAILABLE');
    expect(gate.tryEnter()).toBe(false);
    await expect(gate.enter()).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/zero replicas/) });
    gate.leave();
    expect(gate.active).toBe(0);
    gate.setLimit(1);
    expect(gate.tryEnter()).toBe(true);
  });

  it('raising the limit lets waiters in at once', async () => {
    const gate = new FunctionGate('f', 1, 10);
    gate.tryEnter();
    const a = settle(gate.enter());
    const b = settle(gate.enter());
    gate.setLimit(3);
    expect(await a).toBe('resolved');
    expect(await b).toBe('resolved');
    expect(gate.active).toBe(3);
  });

  it('a waiter whose signal aborts leaves the queue without taking a slot', async () => {
    const gate = new FunctionGate('f', 1, 10);
    gate.tryEnter();
    const controller = new AbortController();
    const gone = settle(gate.enter(controller.signal));
    const next = settle(gate.enter());
    controller.abort();
    expect(await gone).toBe('UNAVAILABLE');
    expect(gate.waiting).toBe(1);
    gate.leave();
    expect(await next).toBe('resolved');
    expect(gate.active).toBe(1);
  });

  it('rejectAll releases every waiter with the error given', async () => {
    const gate = new FunctionGate('f', 1, 10);
    gate.tryEnter();
    const waiters = [settle(gate.enter()), settle(gate.enter())];
    gate.rejectAll(new EngineError('FUNCTION_NOT_FOUND', 'deleted'));
    expect(await Promise.all(waiters)).toEqual(['FUNCTION_NOT_FOUND', 'FUNCTION_NOT_FOUND']);
    expect(gate.waiting).toBe(0);
  });
});

describe('FunctionGate cells shared with other threads', () => {
  it('a slot taken from the cells counts against the limit here, and one given back wakes a waiter', async () => {
    const gate = new FunctionGate('f', 1, 10);
    expect(tryTakeGateCell(gate.cells)).toBe(true);
    expect(gate.tryEnter()).toBe(false);
    expect(tryTakeGateCell(gate.cells)).toBe(false);
    const waiting = gate.enter();
    // No other thread takes a slot before those waiting here.
    expect(releaseGateCell(gate.cells)).toBe(true);
    expect(tryTakeGateCell(gate.cells)).toBe(false);
    gate.wake();
    expect(await settle(waiting)).toBe('resolved');
    expect(gate.active).toBe(1);
    gate.leave();
    expect(tryTakeGateCell(gate.cells)).toBe(true);
    expect(releaseGateCell(gate.cells)).toBe(false);
  });

  it('a paused gate gives no slot to another thread, an unbounded one always does', () => {
    const paused = new FunctionGate('f', 0, 10);
    expect(tryTakeGateCell(paused.cells)).toBe(false);
    const unbounded = new FunctionGate('g', Infinity, 10);
    for (let i = 0; i < 100; i++) expect(tryTakeGateCell(unbounded.cells)).toBe(true);
    paused.setLimit(2);
    expect(tryTakeGateCell(paused.cells)).toBe(true);
    expect(tryTakeGateCell(paused.cells)).toBe(true);
    expect(tryTakeGateCell(paused.cells)).toBe(false);
  });

  it('a slot given back between a failed take and the wait is not lost', async () => {
    const gate = new FunctionGate('f', 1, 10);
    expect(tryTakeGateCell(gate.cells)).toBe(true);
    expect(gate.tryEnter()).toBe(false);
    // The other thread gives its slot back before this one queues: it saw no waiter to wake.
    expect(releaseGateCell(gate.cells)).toBe(false);
    expect(await settle(gate.enter())).toBe('resolved');
  });
});
