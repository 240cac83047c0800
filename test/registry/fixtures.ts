/**
 * Fixtures for the registry tests, built at test time (no binaries in git): modules compiled from
 * WAT with wat2wasm into test/.fixtures/, and tar archives written byte by byte so tests control
 * entry types, whiteouts and paths exactly.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { expect } from 'vitest';
import { EngineError } from '../../src/errors.js';

const run = promisify(execFile);

export const FIXTURES_DIR = fileURLToPath(new URL('../.fixtures/', import.meta.url));

/** A tiny module with one numeric export; its bytes are what every successful pull must return. */
export const ADD_WAT = `(module
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))`;

/** Another module, so tests can tell two images apart by their bytes. */
export const SUB_WAT = `(module
  (func (export "sub") (param i32 i32) (result i32) local.get 0 local.get 1 i32.sub))`;

/** Compiles `wat` to test/.fixtures/NAME.wasm (unique names per test file: files run in parallel). */
export async function buildWasm(name: string, wat: string): Promise<{ path: string; bytes: Buffer }> {
  await mkdir(FIXTURES_DIR, { recursive: true });
  const source = path.join(FIXTURES_DIR, `${name}.wat`);
  const target = path.join(FIXTURES_DIR, `${name}.wasm`);
  await writeFile(source, wat);
  const partial = `${target}.${process.pid}.tmp`;
  await run('/usr/bin/wat2wasm', [source, '-o', partial]);
  await rename(partial, target);
  return { path: target, bytes: await readFile(target) };
}

/** The 8-byte preamble of a component-model binary (version 0x0d, layer 1) and an empty body. */
export const COMPONENT_BYTES = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]);

export interface TarEntry {
  name: string;
  /** '0' file (default), '5' directory, '2' symlink, '1' hard link. */
  type?: '0' | '1' | '2' | '5';
  bytes?: Uint8Array;
  linkname?: string;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** A ustar archive of `entries`, terminated by two zero blocks. */
export function makeTar(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const body = Buffer.from(entry.bytes ?? new Uint8Array());
    const type = entry.type ?? '0';
    const header = Buffer.alloc(512);
    header.write(entry.name, 0, 100, 'utf8');
    header.write(octal(type === '5' ? 0o755 : 0o644, 8), 100, 'ascii');
    header.write(octal(0, 8), 108, 'ascii');
    header.write(octal(0, 8), 116, 'ascii');
    header.write(octal(type === '0' ? body.length : 0, 12), 124, 'ascii');
    header.write(octal(0, 12), 136, 'ascii');
    header.write('        ', 148, 'ascii');
    header.write(type, 156, 'ascii');
    if (entry.linkname) header.write(entry.linkname, 157, 100, 'utf8');
    header.write('ustar\0', 257, 'ascii');
    header.write('00', 263, 'ascii');
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(octal(sum, 7), 148, 'ascii');
    blocks.push(header);
    if (type === '0' && body.length > 0) {
      blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export function gzip(bytes: Uint8Array): Buffer {
  return gzipSync(bytes);
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

export const sha256 = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** The OCI manifest of an image whose one layer is `module` (application/wasm), with the empty config `{}`. */
export function wasmManifest(module: Uint8Array): Buffer {
  const config = Buffer.from('{}');
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/wasm', digest: sha256(module), size: module.length }],
    }),
  );
}

/** Byte equality for Uint8Array and Buffer alike. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/** The EngineError `promise` rejects with; fails the test when it resolves or rejects with anything else. */
export async function refusal(promise: Promise<unknown>): Promise<EngineError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    return err as EngineError;
  }
  throw new Error('expected a refusal');
}
