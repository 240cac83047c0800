import { describe, expect, it } from 'vitest';
import { FunctionLogs, MAX_LINE_CHARS, type LogMessage } from '../../src/logs/function-logs.js';

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
    const sub = logs.subscribe('f', (m) => seen.push(m), () => (ended += 1));
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

  it('endAll ends every follower', () => {
    const logs = make();
    let ended = 0;
    logs.subscribe('f', () => {}, () => (ended += 1));
    logs.subscribe('g', () => {}, () => (ended += 1));
    logs.endAll();
    expect(ended).toBe(2);
  });
});
