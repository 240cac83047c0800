import { describe, expect, it } from 'vitest';
import { normalizeArgs } from '../../src/runtime/index.js';
import { engineError } from './support.js';

describe('normalizeArgs', () => {
  it('omitted (or null) args are empty and not positional', () => {
    expect(normalizeArgs(undefined)).toEqual({ json: '{}', positional: null, values: [] });
    expect(normalizeArgs(null)).toEqual({ json: '{}', positional: null, values: [] });
    expect(normalizeArgs({})).toEqual({ json: '{}', positional: null, values: [] });
  });

  it('keeps an object of strings in key order, compact', () => {
    expect(normalizeArgs({ user: 'alice', token: 'x y' })).toEqual({
      json: '{"user":"alice","token":"x y"}',
      positional: null,
      values: ['alice', 'x y'],
    });
  });

  it('takes numbers and booleans as their JSON text', () => {
    expect(normalizeArgs({ a: 12, b: 1.5, c: true, d: -0.25e-10 })).toEqual({
      json: '{"a":"12","b":"1.5","c":"true","d":"-2.5e-11"}',
      positional: null,
      values: ['12', '1.5', 'true', '-2.5e-11'],
    });
  });

  it('an array is positional and stays an array in json', () => {
    expect(normalizeArgs(['10', 3, false])).toEqual({ json: '["10","3","false"]', positional: ['10', '3', 'false'], values: ['10', '3', 'false'] });
    expect(normalizeArgs([])).toEqual({ json: '[]', positional: [], values: [] });
  });

  it('an object keyed exactly "0", "1", … is positional', () => {
    expect(normalizeArgs({ 0: 'a', 1: 'b' }).positional).toEqual(['a', 'b']);
    expect(normalizeArgs({ 0: 'a', 2: 'b' }).positional).toBeNull();
    expect(normalizeArgs({ 1: 'a' }).positional).toBeNull();
    expect(normalizeArgs({ 0: 'a', x: 'b' }).positional).toBeNull();
  });

  it('keeps a "__proto__" key as data', () => {
    const raw = JSON.parse('{"__proto__":"p","a":"1"}') as unknown;
    expect(normalizeArgs(raw)).toEqual({ json: '{"__proto__":"p","a":"1"}', positional: null, values: ['p', '1'] });
  });

  it('escapes text so json is valid JSON', () => {
    const args = normalizeArgs({ 'k"ey': 'line\nbreak "quoted" é 😀' });
    expect(JSON.parse(args.json)).toEqual({ 'k"ey': 'line\nbreak "quoted" é 😀' });
  });

  it('refuses a nested object, array or null value with INVALID_ARGS naming the key', () => {
    engineError(() => normalizeArgs({ a: { b: 1 } }), 'INVALID_ARGS', /args\.a must be a string, number or boolean, not an object/);
    engineError(() => normalizeArgs({ ok: '1', list: [1] }), 'INVALID_ARGS', /args\.list .*not an array/);
    engineError(() => normalizeArgs({ n: null }), 'INVALID_ARGS', /args\.n .*not null/);
    engineError(() => normalizeArgs(['x', { y: 1 }]), 'INVALID_ARGS', /args\[1\]/);
  });

  it('refuses args that are neither object nor array with INVALID_REQUEST', () => {
    engineError(() => normalizeArgs('a=1'), 'INVALID_REQUEST', /args must be a JSON object or array/);
    engineError(() => normalizeArgs(42), 'INVALID_REQUEST');
    engineError(() => normalizeArgs(true), 'INVALID_REQUEST');
  });
});
