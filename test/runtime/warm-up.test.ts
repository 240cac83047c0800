import { describe, expect, it } from 'vitest';
import { WARM_UP_NUMERIC, WARM_UP_STRING, WARM_UP_WASI, warmUp } from '../../src/runtime/pool/warm-up.js';
import { wat } from './support.js';

describe('worker warm-up', () => {
  it('embeds exactly what its sources assemble to', () => {
    expect(Buffer.from(WARM_UP_NUMERIC, 'base64')).toEqual(Buffer.from(wat('warm-up-numeric')));
    expect(Buffer.from(WARM_UP_STRING, 'base64')).toEqual(Buffer.from(wat('warm-up-string')));
    expect(Buffer.from(WARM_UP_WASI, 'base64')).toEqual(Buffer.from(wat('warm-up-wasi')));
  });

  it('runs every ABI, reused and fresh, and gets the expected answers', () => {
    expect(warmUp()).toBeUndefined();
  });
});
