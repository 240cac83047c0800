import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { Budget } from '../../src/registry/budget.js';
import { applyLayer } from '../../src/registry/file-tree.js';
import { resolveModule, type ImageSource } from '../../src/registry/image-resolver.js';
import { LayerReader, type LayerContent, type TreeChanges } from '../../src/registry/layers.js';
import type { Descriptor } from '../../src/registry/manifest.js';
import { ADD_WAT, COMPONENT_BYTES, SUB_WAT, buildWasm, gzip, makeTar, sameBytes } from './fixtures.js';

const OCI_TAR = 'application/vnd.oci.image.layer.v1.tar';
const OCI_TGZ = 'application/vnd.oci.image.layer.v1.tar+gzip';
const DOCKER_TGZ = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

const sha256 = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

let add: Buffer;
let sub: Buffer;
beforeAll(async () => {
  add = (await buildWasm('layers-add', ADD_WAT)).bytes;
  sub = (await buildWasm('layers-sub', SUB_WAT)).bytes;
});

function limits(unpacked = 1 << 30, entries = 100_000) {
  const fail = (what: string) => (limit: number) => new EngineError('INVALID_FUNCTION_IMAGE', `${what} over ${limit}`);
  return { unpacked: new Budget(unpacked, fail('unpacked')), entries: new Budget(entries, fail('entries')) };
}

/** Feeds `bytes` to a LayerReader in chunks of `chunk` bytes. */
async function readLayer(bytes: Uint8Array, mediaType: string, chunk = 7, budget = limits()): Promise<LayerContent> {
  const descriptor: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length };
  const reader = new LayerReader(descriptor, budget);
  for (let i = 0; i < bytes.length; i += chunk) await reader.write(bytes.subarray(i, i + chunk));
  return reader.end();
}

async function readError(bytes: Uint8Array, mediaType: string, budget = limits()): Promise<EngineError> {
  try {
    await readLayer(bytes, mediaType, 4096, budget);
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    return err as EngineError;
  }
  throw new Error('expected the layer to be refused');
}

function wasmFilesOf(content: LayerContent): Record<string, Buffer> {
  expect(content.kind).toBe('tree');
  return content.kind === 'tree' ? Object.fromEntries(content.changes.wasmFiles) : {};
}

describe('LayerReader', () => {
  it('finds a .wasm file in a plain tar, fed byte-sized chunks', async () => {
    const tar = makeTar([{ name: './', type: '5' }, { name: './app/', type: '5' }, { name: './app/fn.wasm', bytes: add }]);
    const files = wasmFilesOf(await readLayer(tar, OCI_TAR, 1));
    expect(Object.keys(files)).toEqual(['/app/fn.wasm']);
    expect(files['/app/fn.wasm']?.equals(add)).toBe(true);
  });

  it('gunzips a tar+gzip layer', async () => {
    const files = wasmFilesOf(await readLayer(gzip(makeTar([{ name: 'fn.wasm', bytes: add }])), OCI_TGZ));
    expect(files['/fn.wasm']?.equals(add)).toBe(true);
  });

  it('sniffs compression instead of trusting the media type (plain tar under a gzip type)', async () => {
    const files = wasmFilesOf(await readLayer(makeTar([{ name: 'fn.wasm', bytes: add }]), DOCKER_TGZ));
    expect(files['/fn.wasm']?.equals(add)).toBe(true);
  });

  it('sniffs gzip under a plain tar type', async () => {
    const files = wasmFilesOf(await readLayer(gzip(makeTar([{ name: 'fn.wasm', bytes: add }])), OCI_TAR));
    expect(files['/fn.wasm']?.equals(add)).toBe(true);
  });

  it('takes a raw module stored under a tar media type (oras push) as the module', async () => {
    const content = await readLayer(add, OCI_TAR, 3);
    expect(content.kind).toBe('module');
    expect(content.kind === 'module' && sameBytes(content.bytes, add)).toBe(true);
  });

  it.each(['application/wasm', 'application/vnd.wasm.content.layer.v1+wasm', 'application/vnd.module.wasm.content.layer.v1+wasm'])(
    'takes a %s layer as the module',
    async (mediaType) => {
      const content = await readLayer(add, mediaType);
      expect(content.kind === 'module' && sameBytes(content.bytes, add)).toBe(true);
    },
  );

  it('refuses a Wasm-typed layer that is not WebAssembly', async () => {
    const error = await readError(gzip(Buffer.from('hello')), 'application/wasm');
    expect(error.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(error.message).toMatch(/application\/wasm\) does not hold a WebAssembly module/);
  });

  it('refuses a component layer type', async () => {
    const error = await readError(COMPONENT_BYTES, 'application/vnd.bytecodealliance.wasm.component.layer.v0+wasm');
    expect(error.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(error.message).toMatch(/components are not supported yet/);
  });

  it('records only regular .wasm files: symlinks and directories named .wasm do not count', async () => {
    const tar = makeTar([
      { name: 'real.wasm', bytes: add },
      { name: 'link.wasm', type: '2', linkname: 'real.wasm' },
      { name: 'dir.wasm/', type: '5' },
      { name: 'readme.txt', bytes: Buffer.from('hi') },
    ]);
    const content = await readLayer(tar, OCI_TAR);
    expect(Object.keys(wasmFilesOf(content))).toEqual(['/real.wasm']);
  });

  it('records whiteouts and opaque directories', async () => {
    const tar = makeTar([{ name: 'app/.wh.old.wasm' }, { name: 'lib/.wh..wh..opq' }]);
    const content = await readLayer(tar, OCI_TAR);
    expect(content.kind === 'tree' && [...content.changes.whiteouts]).toEqual(['/app/old.wasm']);
    expect(content.kind === 'tree' && [...content.changes.opaqueDirs]).toEqual(['/lib']);
  });

  it('keeps paths inside the image root', async () => {
    const files = wasmFilesOf(await readLayer(makeTar([{ name: '../../etc/fn.wasm', bytes: add }]), OCI_TAR));
    expect(Object.keys(files)).toEqual(['/etc/fn.wasm']);
  });

  it('accepts an empty archive and an empty blob as empty layers', async () => {
    expect(wasmFilesOf(await readLayer(Buffer.alloc(1024), OCI_TAR))).toEqual({});
    expect(wasmFilesOf(await readLayer(gzip(Buffer.alloc(1024)), OCI_TGZ))).toEqual({});
    expect(wasmFilesOf(await readLayer(Buffer.alloc(0), OCI_TAR))).toEqual({});
  });

  it('refuses a layer that is not a tar archive', async () => {
    const error = await readError(Buffer.from('this is not a tar archive at all, just text'.repeat(30)), OCI_TAR);
    expect(error.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(error.message).toMatch(/is not a valid tar archive/);
  });

  it('refuses a truncated archive', async () => {
    const tar = makeTar([{ name: 'fn.wasm', bytes: Buffer.alloc(5000, 1) }]);
    const error = await readError(tar.subarray(0, 2048), OCI_TAR);
    expect(error.message).toMatch(/not a valid tar archive.*[Tt]runcated/);
  });

  it('refuses corrupt gzip', async () => {
    const compressed = gzip(makeTar([{ name: 'fn.wasm', bytes: add }]));
    compressed.fill(0xff, 10, 40);
    const error = await readError(compressed, OCI_TGZ);
    expect(error.message).toMatch(/is not valid gzip/);
  });

  it('refuses zstd and double gzip', async () => {
    expect((await readError(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]), 'application/vnd.oci.image.layer.v1.tar+zstd')).message).toMatch(/zstd/);
    expect((await readError(gzip(gzip(makeTar([]))), OCI_TGZ)).message).toMatch(/compressed twice/);
  });

  it('stops a gzip bomb at the unpacked budget', async () => {
    // 64 MiB of zeros compress to ~64 KiB: the reader must stop long before inflating it all.
    const bomb = gzip(makeTar([{ name: 'big.bin', bytes: Buffer.alloc(64 * 1024 * 1024) }]));
    expect(bomb.length).toBeLessThan(256 * 1024);
    const budget = limits(1024 * 1024);
    const error = await readError(bomb, OCI_TGZ, budget);
    expect(error.message).toMatch(/unpacked over 1048576/);
    expect(budget.unpacked.used).toBeLessThan(8 * 1024 * 1024);
  });

  it('bounds the number of tar entries', async () => {
    const tar = makeTar(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}.txt`, bytes: Buffer.from('x') })));
    expect((await readError(tar, OCI_TAR, limits(1 << 30, 10))).message).toMatch(/entries over 10/);
  });

  it('ignores layers of other types that are not WebAssembly', async () => {
    expect((await readLayer(Buffer.from('{}'), 'application/vnd.oci.empty.v1+json')).kind).toBe('ignored');
    expect((await readLayer(makeTar([{ name: 'fn.wasm', bytes: add }]), 'application/vnd.example.data')).kind).toBe('ignored');
  });
});

function changes(partial: Partial<TreeChanges>): TreeChanges {
  return { wasmFiles: new Map(), otherEntries: new Map(), whiteouts: new Set(), opaqueDirs: new Set(), ...partial };
}

describe('applyLayer (overlay of tar layers)', () => {
  const lower = new Map([
    ['/a.wasm', Buffer.from('a')],
    ['/lib/b.wasm', Buffer.from('b')],
    ['/lib/deep/c.wasm', Buffer.from('c')],
  ]);

  it('adds files and keeps lower ones', () => {
    const tree = applyLayer(lower, changes({ wasmFiles: new Map([['/d.wasm', Buffer.from('d')]]) }));
    expect([...tree.keys()].sort()).toEqual(['/a.wasm', '/d.wasm', '/lib/b.wasm', '/lib/deep/c.wasm']);
  });

  it('a whiteout deletes a file, or a directory with its contents', () => {
    expect([...applyLayer(lower, changes({ whiteouts: new Set(['/a.wasm']) })).keys()]).toEqual(['/lib/b.wasm', '/lib/deep/c.wasm']);
    expect([...applyLayer(lower, changes({ whiteouts: new Set(['/lib']) })).keys()]).toEqual(['/a.wasm']);
  });

  it('an opaque directory hides lower contents but keeps its own layer\'s', () => {
    const tree = applyLayer(lower, changes({ opaqueDirs: new Set(['/lib']), wasmFiles: new Map([['/lib/new.wasm', Buffer.from('n')]]) }));
    expect([...tree.keys()].sort()).toEqual(['/a.wasm', '/lib/new.wasm']);
  });

  it('a file or symlink replacing a directory hides what was under it; a directory does not', () => {
    expect([...applyLayer(lower, changes({ otherEntries: new Map([['/lib', 'other']]) })).keys()]).toEqual(['/a.wasm']);
    expect(applyLayer(lower, changes({ otherEntries: new Map([['/lib', 'dir']]) })).size).toBe(3);
  });

  it('a non-wasm entry at the same path replaces a lower .wasm file; a new .wasm file overwrites it', () => {
    expect(applyLayer(lower, changes({ otherEntries: new Map([['/a.wasm', 'other']]) })).has('/a.wasm')).toBe(false);
    const tree = applyLayer(lower, changes({ wasmFiles: new Map([['/a.wasm', Buffer.from('new')]]) }));
    expect(tree.get('/a.wasm')?.toString()).toBe('new');
  });
});

/** An image held in memory: blobs by digest, a root manifest. */
function memorySource(blobs: Map<string, Buffer>, root: Buffer, overrides: Partial<ImageSource> = {}): ImageSource {
  return {
    image: 'mem/test:v1',
    origin: 'memory registry',
    corruptCode: 'REGISTRY_ERROR',
    fetchRoot: async () => ({ bytes: root, digest: sha256(root), contentType: 'application/vnd.oci.image.manifest.v1+json' }),
    fetchManifest: async (d) => ({ bytes: blobs.get(d.digest) ?? Buffer.alloc(0) }),
    openBlob: async (d) => {
      const blob = blobs.get(d.digest);
      if (!blob) throw new EngineError('IMAGE_NOT_FOUND', 'no blob');
      return (async function* () {
        for (let i = 0; i < blob.length; i += 1000) yield blob.subarray(i, i + 1000);
      })();
    },
    ...overrides,
  };
}

function imageOf(layers: Array<{ bytes: Buffer; mediaType: string; annotations?: Record<string, string> }>, lie?: (d: Descriptor) => Descriptor) {
  const blobs = new Map<string, Buffer>();
  const descriptors = layers.map(({ bytes, mediaType, annotations }) => {
    blobs.set(sha256(bytes), bytes);
    const d: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length, ...(annotations ? { annotations } : {}) };
    return lie ? lie(d) : d;
  });
  const config = Buffer.from('{}');
  blobs.set(sha256(config), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: 2 },
      layers: descriptors,
    }),
  );
  return { blobs, manifest };
}

async function resolveError(source: ImageSource, maxImageBytes = 1 << 30): Promise<EngineError> {
  try {
    await resolveModule(source, { limits: { maxImageBytes, maxTarEntries: 1000 }, logger: silentLogger, signal: new AbortController().signal });
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    return err as EngineError;
  }
  throw new Error('expected the image to be refused');
}

describe('resolveModule (one .wasm across all layers)', () => {
  const resolve = (source: ImageSource) =>
    resolveModule(source, { limits: { maxImageBytes: 1 << 30, maxTarEntries: 1000 }, logger: silentLogger, signal: new AbortController().signal });

  it('returns the single module with its path and the root manifest digest', async () => {
    const { blobs, manifest } = imageOf([
      { bytes: gzip(makeTar([{ name: 'etc/conf', bytes: Buffer.from('x') }])), mediaType: OCI_TGZ },
      { bytes: gzip(makeTar([{ name: './', type: '5' }, { name: './fn.wasm', bytes: add }])), mediaType: OCI_TGZ },
    ]);
    const fetched = await resolve(memorySource(blobs, manifest));
    expect(sameBytes(fetched.bytes, add)).toBe(true);
    expect(fetched.fileName).toBe('/fn.wasm');
    expect(fetched.manifestDigest).toBe(sha256(manifest));
  });

  it('names a raw Wasm layer by its title annotation', async () => {
    const { blobs, manifest } = imageOf([{ bytes: add, mediaType: 'application/wasm', annotations: { 'org.opencontainers.image.title': 'fn.wasm' } }]);
    expect((await resolve(memorySource(blobs, manifest))).fileName).toBe('fn.wasm');
  });

  it('refuses an image with no .wasm file', async () => {
    const { blobs, manifest } = imageOf([{ bytes: gzip(makeTar([{ name: 'fn.txt', bytes: add }])), mediaType: OCI_TGZ }]);
    const error = await resolveError(memorySource(blobs, manifest));
    expect(error.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(error.message).toMatch(/mem\/test:v1 holds no \.wasm file/);
  });

  it('refuses several .wasm files, naming them, across layers and layer kinds', async () => {
    const { blobs, manifest } = imageOf([
      { bytes: gzip(makeTar([{ name: 'a/one.wasm', bytes: add }])), mediaType: OCI_TGZ },
      { bytes: sub, mediaType: 'application/vnd.wasm.content.layer.v1+wasm' },
    ]);
    const error = await resolveError(memorySource(blobs, manifest));
    expect(error.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(error.message).toMatch(/holds 2 \.wasm modules \(.*\/a\/one\.wasm.*\); exactly one is required/);
  });

  it('counts the final tree: a file deleted by a later layer does not count', async () => {
    const { blobs, manifest } = imageOf([
      { bytes: makeTar([{ name: 'old.wasm', bytes: sub }, { name: 'fn.wasm', bytes: add }]), mediaType: OCI_TAR },
      { bytes: makeTar([{ name: '.wh.old.wasm' }]), mediaType: OCI_TAR },
    ]);
    const fetched = await resolve(memorySource(blobs, manifest));
    expect(fetched.fileName).toBe('/fn.wasm');
    expect(sameBytes(fetched.bytes, add)).toBe(true);
  });

  it('refuses a component binary found in a tar layer', async () => {
    const { blobs, manifest } = imageOf([{ bytes: makeTar([{ name: 'c.wasm', bytes: COMPONENT_BYTES }]), mediaType: OCI_TAR }]);
    expect((await resolveError(memorySource(blobs, manifest))).message).toMatch(/\/c\.wasm .* is a component: .*components are not supported yet/);
  });

  it('refuses a .wasm file that is not WebAssembly', async () => {
    const { blobs, manifest } = imageOf([{ bytes: makeTar([{ name: 'fn.wasm', bytes: Buffer.from('#!/bin/sh') }]), mediaType: OCI_TAR }]);
    expect((await resolveError(memorySource(blobs, manifest))).message).toMatch(/\/fn\.wasm in image mem\/test:v1 is not a WebAssembly module/);
  });

  it('refuses an image without layers', async () => {
    const { blobs, manifest } = imageOf([]);
    expect((await resolveError(memorySource(blobs, manifest))).message).toMatch(/has no layers/);
  });

  it('reports a digest mismatch as the source\'s corruption, even when the bytes also fail to extract', async () => {
    const good = gzip(makeTar([{ name: 'fn.wasm', bytes: add }]));
    const { blobs, manifest } = imageOf([{ bytes: good, mediaType: OCI_TGZ }]);
    const tampered = Buffer.from(good);
    tampered.fill(0x55, 20, 60); // breaks the gzip stream and the digest
    blobs.set(sha256(good), tampered);
    const error = await resolveError(memorySource(blobs, manifest));
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toMatch(/memory registry: blob of mem\/test:v1 does not match its digest/);
  });

  it('refuses a blob longer or shorter than its descriptor', async () => {
    const longer = imageOf([{ bytes: add, mediaType: 'application/wasm' }], (d) => ({ ...d, size: d.size - 1 }));
    expect((await resolveError(memorySource(longer.blobs, longer.manifest))).message).toMatch(/larger than its descriptor/);
    const shorter = imageOf([{ bytes: add, mediaType: 'application/wasm' }], (d) => ({ ...d, size: d.size + 1 }));
    expect((await resolveError(memorySource(shorter.blobs, shorter.manifest))).message).toMatch(/ended after \d+ of \d+ bytes/);
  });

  it('refuses an image whose layers are declared larger than the limit, before downloading', async () => {
    const { blobs, manifest } = imageOf([{ bytes: add, mediaType: 'application/wasm' }]);
    let opened = 0;
    const source = memorySource(blobs, manifest, {
      openBlob: async () => {
        opened += 1;
        return (async function* () {})();
      },
    });
    const error = await resolveError(source, 10);
    expect(error.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(error.message).toMatch(/is larger than the limit of 10 bytes/);
    expect(opened).toBe(0);
  });

  it('verifies a platform manifest picked from an index against its descriptor', async () => {
    const { blobs, manifest } = imageOf([{ bytes: add, mediaType: 'application/wasm' }]);
    const indexBytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), size: manifest.length, platform: { os: 'wasi', architecture: 'wasm' } }],
      }),
    );
    blobs.set(sha256(manifest), manifest);
    const source = memorySource(blobs, indexBytes, {
      fetchRoot: async () => ({ bytes: indexBytes, digest: sha256(indexBytes) }),
    });
    const fetched = await resolve(source);
    expect(sameBytes(fetched.bytes, add)).toBe(true);
    expect(fetched.manifestDigest).toBe(sha256(indexBytes));

    blobs.set(sha256(manifest), Buffer.from(manifest.toString().replace('"schemaVersion":2', '"schemaVersion": 2').slice(0, manifest.length)));
    expect((await resolveError(source)).message).toMatch(/does not match its digest/);
  });
});
