/**
 * Turns an image into its one WebAssembly module, whatever stores it (a registry or an OCI layout):
 * manifest → (index → platform manifest)* → layers → the single `.wasm`. Every manifest and blob is
 * checked against its digest and size here, in one place, before anything taken from it is used.
 */
import { EngineError, type ErrorCode } from '../errors.js';
import type { Logger } from '../logger.js';
import { Budget } from './budget.js';
import { StreamVerifier, digestLike, shortDigest } from './digest.js';
import { applyLayer, type WasmTree } from './file-tree.js';
import { LayerReader, type LayerContent, type LayerLimits } from './layers.js';
import {
  MalformedManifestError,
  parseManifest,
  selectPlatformManifest,
  type Descriptor,
  type ImageManifest,
  type Manifest,
} from './manifest.js';
import { cachedLayer, rememberLayer } from './layer-cache.js';
import type { FetchedModule, ModuleCache, TransferProgress } from './types.js';
import { COMPONENTS_UNSUPPORTED, checkCoreModule } from './wasm-binary.js';
import { WASM_COMPONENT_LAYER } from './media-types.js';

export interface RawManifest {
  bytes: Buffer;
  /** What the source says the bytes are (HTTP Content-Type, or the referring descriptor's mediaType). */
  contentType?: string;
}

export interface RootManifest extends RawManifest {
  /** The digest the reference resolved to; the source has already checked the bytes against it. */
  digest: string;
}

/** Where an image's manifests and blobs come from. */
export interface ImageSource {
  /** The image, as messages name it (`127.0.0.1:5000/hello:v1`, `oci:/x:v1`). */
  readonly image: string;
  /** Who answered, as messages name it (`registry 127.0.0.1:5000`, `OCI layout /x`). */
  readonly origin: string;
  /** The code for a corrupt answer: an upstream failure for a registry, a bad image for a local layout. */
  readonly corruptCode: ErrorCode;
  fetchRoot(signal: AbortSignal): Promise<RootManifest>;
  /** The manifest a descriptor names, unverified (the resolver checks it). */
  fetchManifest(descriptor: Descriptor, signal: AbortSignal): Promise<RawManifest>;
  /** The blob a descriptor names, as a stream, unverified (the resolver checks it). */
  openBlob(descriptor: Descriptor, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
}

export interface ResolveLimits {
  /** Upper bound on the bytes of all blobs downloaded, and separately on all bytes unpacked. */
  maxImageBytes: number;
  /** Upper bound on the tar entries of all layers. */
  maxTarEntries: number;
}

export interface ResolveOptions {
  limits: ResolveLimits;
  logger: Logger;
  signal: AbortSignal;
  /** Modules already stored, so a layer known to hold one is not downloaded again. */
  cache?: ModuleCache;
  onProgress?: (event: TransferProgress) => void;
}

/** Indexes nest (an index may point at an index); real images use one level, allow a few. */
const MAX_INDEX_DEPTH = 4;

function tooLarge(image: string, what: string): (limit: number) => EngineError {
  return (limit) => new EngineError('INVALID_FUNCTION_IMAGE', `image ${image} ${what} the limit of ${limit} bytes`);
}

function corrupt(source: ImageSource, message: string): EngineError {
  return new EngineError(source.corruptCode, `${source.origin}: ${message}`);
}

/** Checks exact manifest bytes against the descriptor that named them. */
export function verifyManifestBytes(source: ImageSource, bytes: Uint8Array, descriptor: Descriptor): void {
  if (bytes.byteLength !== descriptor.size) {
    throw corrupt(
      source,
      `manifest ${shortDigest(descriptor.digest)} of ${source.image} has ${bytes.byteLength} bytes, its descriptor says ${descriptor.size}`,
    );
  }
  const actual = digestLike(descriptor.digest, bytes);
  if (actual !== descriptor.digest) {
    throw corrupt(source, `manifest of ${source.image} does not match its digest ${descriptor.digest} (got ${actual})`);
  }
}

function readManifest(source: ImageSource, raw: RawManifest): Manifest {
  try {
    return parseManifest(raw.bytes, raw.contentType);
  } catch (err) {
    if (err instanceof MalformedManifestError) {
      throw corrupt(source, `malformed manifest for ${source.image}: ${err.message}`);
    }
    throw err;
  }
}

async function resolveImageManifest(source: ImageSource, root: RootManifest, signal: AbortSignal): Promise<ImageManifest> {
  let manifest = readManifest(source, root);
  for (let depth = 0; manifest.kind === 'index'; depth += 1) {
    if (depth >= MAX_INDEX_DEPTH) throw corrupt(source, `image indexes of ${source.image} nest too deeply`);
    const chosen = selectPlatformManifest(manifest, source.image);
    const raw = await source.fetchManifest(chosen, signal);
    verifyManifestBytes(source, raw.bytes, chosen);
    // The descriptor's mediaType is authoritative when the source has no header of its own.
    manifest = readManifest(source, { bytes: raw.bytes, contentType: raw.contentType ?? chosen.mediaType });
  }
  return manifest;
}

/**
 * Streams one blob through its verifier and the layer reader at once. The digest check wins over
 * any extraction error: a corrupt download must be reported as such, not as a bad image.
 */
async function readLayer(
  source: ImageSource,
  layer: Descriptor,
  downloaded: Budget,
  limits: LayerLimits,
  signal: AbortSignal,
  onProgress?: (event: TransferProgress) => void,
): Promise<LayerContent> {
  const reader = new LayerReader(layer, limits);
  const verifier = new StreamVerifier(layer.digest);
  let extractionError: unknown;
  const progress = (phase: TransferProgress['phase']): void =>
    onProgress?.({ direction: 'download', phase, digest: layer.digest, total: layer.size, done: verifier.bytes });
  progress('start');
  for await (const chunk of await source.openBlob(layer, signal)) {
    verifier.update(chunk);
    if (verifier.bytes > layer.size) {
      throw corrupt(source, `blob ${shortDigest(layer.digest)} of ${source.image} is larger than its descriptor's ${layer.size} bytes`);
    }
    // Counted as it streams: an oversized layer is refused here, before the rest is read.
    downloaded.take(chunk.byteLength);
    progress('progress');
    if (extractionError === undefined) {
      try {
        await reader.write(chunk);
      } catch (err) {
        extractionError = err; // keep draining: the digest decides whose fault it was
      }
    }
  }
  if (verifier.bytes !== layer.size) {
    throw corrupt(source, `blob ${shortDigest(layer.digest)} of ${source.image} ended after ${verifier.bytes} of ${layer.size} bytes`);
  }
  const actual = verifier.actual();
  if (actual !== layer.digest) {
    throw corrupt(source, `blob of ${source.image} does not match its digest ${layer.digest} (got ${actual})`);
  }
  if (extractionError !== undefined) throw extractionError;
  const content = await reader.end();
  progress('done');
  return content;
}

interface Candidate {
  fileName: string;
  bytes: Buffer;
}

/** Resolves `source` to its one module; `FetchedModule.manifestDigest` is the root digest. */
export async function resolveModule(source: ImageSource, options: ResolveOptions): Promise<FetchedModule> {
  const { limits, logger, signal, cache } = options;
  const root = await source.fetchRoot(signal);
  const manifest = await resolveImageManifest(source, root, signal);
  if (manifest.layers.length === 0) {
    throw new EngineError('INVALID_FUNCTION_IMAGE', `image ${source.image} has no layers, so no .wasm file`);
  }

  // Refuse what can be refused from the manifest alone before downloading anything.
  const component = manifest.layers.find((layer) => layer.mediaType === WASM_COMPONENT_LAYER);
  if (component) {
    throw new EngineError('INVALID_FUNCTION_IMAGE', `image ${source.image} holds a component layer: ${COMPONENTS_UNSUPPORTED}`);
  }
  const downloaded = new Budget(limits.maxImageBytes, tooLarge(source.image, 'is larger than'));
  const declared = manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
  if (!downloaded.fits(declared)) {
    throw tooLarge(source.image, `(${declared} bytes of layers) is larger than`)(limits.maxImageBytes);
  }
  const layerLimits: LayerLimits = {
    unpacked: new Budget(limits.maxImageBytes, tooLarge(source.image, 'unpacks to more than')),
    entries: new Budget(limits.maxTarEntries, (limit) => new EngineError('INVALID_FUNCTION_IMAGE', `image ${source.image} has more than ${limit} files`)),
  };

  const rawModules: Candidate[] = [];
  let tree: WasmTree = new Map();
  let reused = 0;
  for (const layer of manifest.layers) {
    let content = cache ? await cachedLayer(cache, layer, logger) : undefined;
    if (content) {
      reused += 1;
      options.onProgress?.({ direction: 'download', phase: 'skipped', digest: layer.digest, total: layer.size, done: 0 });
      logger.debug({ image: source.image, layer: layer.digest, content: content.kind }, 'layer already stored, not downloaded');
    } else {
      content = await readLayer(source, layer, downloaded, layerLimits, signal, options.onProgress);
      if (cache) await rememberLayer(cache, layer, content, logger);
      logger.debug({ image: source.image, layer: layer.digest, mediaType: layer.mediaType, content: content.kind }, 'layer read');
    }
    if (content.kind === 'module') {
      const title = layer.annotations?.['org.opencontainers.image.title'];
      rawModules.push({ fileName: title ?? `layer ${shortDigest(layer.digest)}`, bytes: content.bytes });
    } else if (content.kind === 'tree') {
      tree = applyLayer(tree, content.changes);
    }
  }

  const candidates: Candidate[] = [
    ...rawModules,
    ...[...tree].map(([fileName, bytes]) => ({ fileName, bytes })),
  ];
  const [only] = candidates;
  if (only === undefined) {
    throw new EngineError('INVALID_FUNCTION_IMAGE', `image ${source.image} holds no .wasm file (and no WebAssembly layer)`);
  }
  if (candidates.length > 1) {
    const names = candidates.map((c) => c.fileName).join(', ');
    throw new EngineError(
      'INVALID_FUNCTION_IMAGE',
      `image ${source.image} holds ${candidates.length} .wasm modules (${names}); exactly one is required`,
    );
  }
  checkCoreModule(only.bytes, `${only.fileName} in image ${source.image}`);
  return { bytes: only.bytes, manifestDigest: root.digest, fileName: only.fileName, downloadedBytes: downloaded.used, reusedLayers: reused };
}
