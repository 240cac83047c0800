/**
 * A small seeded PRNG (sfc32, seeded through splitmix32) so that every fuzz case is reproduced
 * from its seed alone: the same seed gives the same module bytes, arguments and request splits on
 * every machine. Math.random is never used by the fuzzers.
 */

/** splitmix32: spreads a 32-bit seed into well-mixed words. */
function splitmix32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Rng {
  /** @param {number} seed a 32-bit integer */
  constructor(seed) {
    const mix = splitmix32(seed);
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A uniform 32-bit unsigned integer. */
  u32() {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** A float in [0, 1). */
  float() {
    return this.u32() / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min, max) {
    return min + Math.floor(this.float() * (max - min + 1));
  }

  /** True with probability p. */
  chance(p) {
    return this.float() < p;
  }

  /** @template T @param {readonly T[]} items @returns {T} */
  pick(items) {
    return items[Math.floor(this.float() * items.length)];
  }

  bytes(n) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      out[i] = v & 0xff;
      if (i + 1 < n) out[i + 1] = (v >>> 8) & 0xff;
      if (i + 2 < n) out[i + 2] = (v >>> 16) & 0xff;
      if (i + 3 < n) out[i + 3] = v >>> 24;
    }
    return out;
  }

  /** A child generator for one sub-case, so that adding draws to one case does not shift the others. */
  fork(salt) {
    return new Rng((this.u32() ^ Math.imul(salt >>> 0, 0x9e3779b1)) >>> 0);
  }
}

/** The seed of case `index` of a run seeded `runSeed`: a case is reproduced from this one number. */
export function caseSeed(runSeed, index) {
  return (Math.imul(runSeed >>> 0, 0x01000193) ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
}
