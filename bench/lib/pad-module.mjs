// The 2 MB `authentication` of the cold-start measure, built from the example at bench setup: the
// same code with a 2 MiB active data segment (a large static table, as a real function might
// carry), placed in 32 more pages of initial memory above everything the function uses, so that
// every instantiation copies it. The bytes are pseudo-random, so nothing compresses or dedupes them.
import { readFileSync, writeFileSync } from 'node:fs';

const PAGE = 65536;

function uleb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n) {
  const out = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function readUleb(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[at++];
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [value, at];
  }
}

function sections(bytes) {
  const out = [];
  let at = 8;
  while (at < bytes.length) {
    const id = bytes[at];
    const [size, body] = readUleb(bytes, at + 1);
    out.push({ id, start: at, body, end: body + size });
    at = body + size;
  }
  return out;
}

function section(id, body) {
  return Uint8Array.from([id, ...uleb(body.length), ...body]);
}

export function padModule(bytes, padBytes) {
  const parts = [bytes.subarray(0, 8)];
  let memoryPages;
  for (const s of sections(bytes)) {
    const body = bytes.subarray(s.body, s.end);
    if (s.id === 5) {
      // one memory: flags, min[, max]
      const [count, at] = readUleb(body, 0);
      if (count !== 1) throw new Error('expected one memory');
      const flags = body[at];
      const [min, next] = readUleb(body, at + 1);
      memoryPages = min;
      const rest = flags & 1 ? [...body.subarray(next)] : [];
      parts.push(section(5, [1, flags, ...uleb(min + Math.ceil(padBytes / PAGE)), ...rest]));
    } else if (s.id === 12) {
      const [count] = readUleb(body, 0);
      parts.push(section(12, uleb(count + 1)));
    } else if (s.id === 11) {
      if (memoryPages === undefined) throw new Error('no memory section before the data section');
      const [count, at] = readUleb(body, 0);
      const pad = new Uint8Array(padBytes);
      let x = 0x9e3779b9;
      for (let i = 0; i < pad.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        pad[i] = x & 0xff;
      }
      const segment = [0x00, 0x41, ...sleb(memoryPages * PAGE), 0x0b, ...uleb(pad.length)];
      const head = Uint8Array.from([...uleb(count + 1), ...body.subarray(at), ...segment]);
      const full = new Uint8Array(head.length + pad.length);
      full.set(head);
      full.set(pad, head.length);
      parts.push(Uint8Array.from([11, ...uleb(full.length)]), full);
    } else {
      parts.push(bytes.subarray(s.start, s.end));
    }
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  if (!WebAssembly.validate(out)) throw new Error('the padded module does not validate');
  return out;
}

export function writePadded(source, target, padBytes = 2 * 1024 * 1024) {
  const out = padModule(new Uint8Array(readFileSync(source)), padBytes);
  writeFileSync(target, out);
  return out.length;
}
