/**
 * A layer whose module is already stored is not downloaded again: raw Wasm layers by their digest,
 * tar layers through the note written at their first download. Cache trouble is only a miss.
 */
import { createHash } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { resolveModule, type ImageSource } from '../../src/registry/image-resolver.js';
import { layerNoteModules } from '../../src/registry/layer-cache.js';
import type { ModuleCache, TransferProgress } from '../../src/registry/types.js';
import { ADD_WAT, buildWasm, gzip, makeTar, sameBytes } from './fixtures.js';

const sha256 = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
let add: Buffer;

beforeAll(async () => {
  add = (await buildWasm('layer-cache-add', ADD_WAT)).bytes;
});

class MemoryCache implements ModuleCache {
  modules = new Map<string, Uint8Array>();
  notes = new Map<string, unknown>();
  async module(digest: string) {
    return this.modules.get(digest);
  }
  async layerNote(digest: string) {
    return this.notes.get(digest);
  }
  async rememberLayer(digest: string, note: unknown) {
    this.notes.set(digest, JSON.parse(JSON.stringify(note)));
  }
  async forgetLayer(digest: string) {
    this.notes.delete(digest);
  }
}

/** A one-layer image in memory that counts blob downloads. */
function source(layer: { bytes: Buffer; mediaType: string }) {
  const config = Buffer.from('{}');
  const blobs = new Map([[sha256(layer.bytes), layer.bytes], [sha256(config), config]]);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: layer.mediaType, digest: sha256(layer.bytes), size: layer.bytes.length }],
    }),
  );
  const opened: string[] = [];
  const image: ImageSource = {
    image: 'mem/fn:v1',
    origin: 'memory',
    corruptCode: 'REGISTRY_ERROR',
    fetchRoot: async () => ({ bytes: manifest, digest: sha256(manifest), contentType: 'application/vnd.oci.image.manifest.v1+json' }),
    fetchManifest: async () => {
      throw new Error('no index here');
    },
    openBlob: async (d) => {
      opened.push(d.digest);
      const blob = blobs.get(d.digest);
      if (!blob) throw new EngineError('IMAGE_NOT_FOUND', 'no blob');
      return (async function* () {
        yield blob;
      })();
    },
  };
  return { image, opened };
}

const resolve = (image: ImageSource, cache: ModuleCache, onProgress?: (e: TransferProgress) => void) =>
  resolveModule(image, {
    limits: { maxImageBytes: 1 << 30, maxTarEntries: 1000 },
    logger: silentLogger,
    signal: new AbortController().signal,
    cache,
    ...(onProgress ? { onProgress } : {}),
  });

describe('module cache', () => {
  it('a raw Wasm layer whose module is stored is not downloaded: its digest is the module\'s', async () => {
    const { image, opened } = source({ bytes: add, mediaType: 'application/wasm' });
    const cache = new MemoryCache();
    const first = await resolve(image, cache);
    expect(opened).toHaveLength(1);
    expect(first.downloadedBytes).toBe(add.length);
    expect(cache.notes.size).toBe(0); // no note needed

    cache.modules.set(sha256(add), add); // the engine stored it
    const events: TransferProgress[] = [];
    const second = await resolve(image, cache, (e) => events.push(e));
    expect(opened).toHaveLength(1);
    expect(sameBytes(second.bytes, add)).toBe(true);
    expect(second).toMatchObject({ downloadedBytes: 0, reusedLayers: 1 });
    expect(events.map((e) => e.phase)).toEqual(['skipped']);
  });

  it('a tar layer is skipped once its note\'s modules are stored, and keeps its file name', async () => {
    const tar = gzip(makeTar([{ name: './', type: '5' }, { name: './bin/fn.wasm', bytes: add }, { name: './README', bytes: Buffer.from('hi') }]));
    const { image, opened } = source({ bytes: tar, mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip' });
    const cache = new MemoryCache();
    await resolve(image, cache);
    expect(opened).toHaveLength(1);
    const note = cache.notes.get(sha256(tar));
    expect(layerNoteModules(note)).toEqual([sha256(add)]);

    // The module is not stored yet (deploy failed, say): the note is of no use, so download again.
    let forgotten = 0;
    const forget = cache.forgetLayer.bind(cache);
    cache.forgetLayer = async (digest: string) => {
      forgotten += 1;
      await forget(digest);
    };
    await resolve(image, cache);
    expect(opened).toHaveLength(2);
    expect(forgotten).toBe(1);
    expect(cache.notes.has(sha256(tar))).toBe(true); // written again by the new download

    cache.modules.set(sha256(add), add);
    const reused = await resolve(image, cache);
    expect(opened).toHaveLength(2);
    expect(reused).toMatchObject({ fileName: '/bin/fn.wasm', downloadedBytes: 0, reusedLayers: 1 });
    expect(sameBytes(reused.bytes, add)).toBe(true);
  });

  it('a damaged note or a failing cache means a download, never a failed pull', async () => {
    const tar = gzip(makeTar([{ name: 'fn.wasm', bytes: add }]));
    const { image, opened } = source({ bytes: tar, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
    const cache = new MemoryCache();
    cache.notes.set(sha256(tar), { v: 1, kind: 'tree', wasmFiles: 'nonsense' });
    await resolve(image, cache);
    expect(opened).toHaveLength(1);

    const failing: ModuleCache = {
      module: async () => {
        throw new Error('disk on fire');
      },
      layerNote: async () => undefined,
      rememberLayer: async () => {
        throw new Error('disk on fire');
      },
      forgetLayer: async () => {},
    };
    expect(sameBytes((await resolve(image, failing)).bytes, add)).toBe(true);
  });
});
