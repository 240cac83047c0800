import { describe, expect, it } from 'vitest';
import { FunctionLogs, MAX_FUNCTION_CHARS, MAX_LINE_CHARS, MAX_TOTAL_CHARS, type LogMessage } from '../../src/logs/function-logs.js';

const make = (lines = 3): FunctionLogs => new FunctionLogs({ linesPerFunction: lines, namespace: 'openfaas-fn', instance: 'node-1' });

describe('FunctionLogs', () => {
  it('splits stderr into lines with the faas-provider Message fields', () => {
    const logs = make(10);
    logs.functionStderr('f', 'one\ntwo\n');
    const messages = logs.query({ name: 'f' });
    expect(messages.map((m) => m.text)).toEqual(['one', 'two']);
    expect(Object.keys(messages[0]!).sort()).toEqual(['instance', 'name', 'namespace', 'text', 'timestamp']);
    expect(messages[0]).toMatchObject({ name: 'f', namespace: 'openfaas-fn', instance: 'node-1' });
    expect(new Date(messages[0]!.timestamp).toISOString()).toBe(messages[0]!.timestamp);
  });

  it('keeps only the newest lines per function, and each function apart', () => {
    const logs = make(3);
    logs.functionStderr('f', 'a\nb\nc\nd\ne');
    logs.functionStderr('g', 'x');
    expect(logs.query({ name: 'f' }).map((m) => m.text)).toEqual(['c', 'd', 'e']);
    expect(logs.query({ name: 'g' }).map((m) => m.text)).toEqual(['x']);
    expect(logs.query({ name: 'nobody' })).toEqual([]);
  });

  it('tail gives the last N, <= 0 everything; since filters by time', () => {
    const logs = make(10);
    logs.functionStderr('f', 'a\nb\nc');
    expect(logs.query({ name: 'f', tail: 2 }).map((m) => m.text)).toEqual(['b', 'c']);
    expect(logs.query({ name: 'f', tail: 0 }).map((m) => m.text)).toEqual(['a', 'b', 'c']);
    expect(logs.query({ name: 'f', tail: -1 })).toHaveLength(3);
    expect(logs.query({ name: 'f', since: new Date(Date.now() + 60_000) })).toEqual([]);
    expect(logs.query({ name: 'f', since: new Date(0) })).toHaveLength(3);
  });

  it('cuts a huge line', () => {
    const logs = make();
    logs.functionStderr('f', 'x'.repeat(MAX_LINE_CHARS + 10));
    expect(logs.query({ name: 'f' })[0]!.text).toHaveLength(MAX_LINE_CHARS + 1);
  });

  it('delivers new lines to followers until closed, and ends them when the function goes', () => {
    const logs = make();
    const seen: LogMessage[] = [];
    let ended = 0;
    const sub = logs.subscribe('f', (m) => seen.push(...m), () => (ended += 1));
    logs.functionStderr('f', 'one');
    logs.functionStderr('g', 'other');
    expect(seen.map((m) => m.text)).toEqual(['one']);
    sub.close();
    logs.functionStderr('f', 'two');
    expect(seen).toHaveLength(1);
    logs.subscribe('f', () => {}, () => (ended += 1));
    logs.functionRemoved('f');
    expect(ended).toBe(1);
    expect(logs.query({ name: 'f' })).toEqual([]);
  });

  it('keeps copies of bounded lines: per call, per function and in all', () => {
    const logs = make(1000);
    // Millions of empty lines in one call: only the last ones are looked at.
    logs.functionStderr('f', '\n'.repeat(4_000_000));
    expect(logs.query({ name: 'f' })).toHaveLength(1000);
    // Megabytes without a newline: one cut line, its end kept.
    logs.functionStderr('g', `${'a'.repeat(3_000_000)}z`);
    const [line] = logs.query({ name: 'g' });
    expect(line!.text.startsWith('…')).toBe(true);
    expect(line!.text.length).toBeLessThanOrEqual(MAX_LINE_CHARS + 2);
    for (let i = 0; i < 200; i++) logs.functionStderr('h', 'b'.repeat(MAX_LINE_CHARS));
    expect(logs.heldChars).toBeLessThanOrEqual(2 * MAX_FUNCTION_CHARS + 2 * MAX_LINE_CHARS + 1000);
    for (let i = 0; i < 80; i++) logs.functionStderr(`fn${i}`, `${'c'.repeat(MAX_LINE_CHARS)}\n`.repeat(64));
    expect(logs.heldChars).toBeLessThanOrEqual(MAX_TOTAL_CHARS);
    expect(logs.query({ name: 'fn79' }).length).toBeGreaterThan(0);
  });

  it('endAll ends every follower', () => {
    const logs = make();
    let ended = 0;
    logs.subscribe('f', () => {}, () => (ended += 1));
    logs.subscribe('g', () => {}, () => (ended += 1));
    logs.endAll();
    expect(ended).toBe(2);
  });
});
