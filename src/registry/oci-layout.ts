/**
 * An image in an OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), as
 * skopeo, umoci and `wasm-engine pack` write them. The tag is the `org.opencontainers.image.ref.name`
 * annotation of an `index.json` entry. A layout is local, so a corrupt one is a bad image
 * (INVALID_FUNCTION_IMAGE) rather than an upstream failure.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { EngineError } from '../errors.js';
import { parseDigest } from './digest.js';
import type { ImageSource, RawManifest, RootManifest } from './image-resolver.js';
import { verifyManifestBytes } from './image-resolver.js';
import {
  MAX_MANIFEST_BYTES,
  MalformedManifestError,
  parseManifest,
  selectPlatformManifest,
  type Descriptor,
} from './manifest.js';
import { OCI_INDEX } from './media-types.js';
import { DEFAULT_TAG, type OciLayoutReference } from './reference.js';

const REF_NAME = 'org.opencontainers.image.ref.name';

function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export class OciLayoutSource implements ImageSource {
  readonly image: string;
  readonly origin: string;
  readonly corruptCode = 'INVALID_FUNCTION_IMAGE' as const;

  constructor(private readonly reference: OciLayoutReference) {
    this.image = reference.canonical;
    this.origin = `OCI layout ${reference.dir}`;
  }

  private notFound(message: string): EngineError {
    return new EngineError('IMAGE_NOT_FOUND', `${this.origin}: ${message}`);
  }

  private corrupt(message: string): EngineError {
    return new EngineError(this.corruptCode, `${this.origin}: ${message}`);
  }

  private blobPath(digest: string): string {
    const parsed = parseDigest(digest);
    // Digests were validated when parsed, so this only guards against a path escaping blobs/.
    if (!parsed) throw this.corrupt(`unsupported digest ${digest}`);
    return path.join(this.reference.dir, 'blobs', parsed.algorithm, parsed.hex);
  }

  private async readSmallFile(file: string, what: string, missing: () => EngineError): Promise<Buffer> {
    let size: number;
    try {
      const info = await stat(file);
      if (!info.isFile()) throw missing();
      size = info.size;
    } catch (err) {
      if (err instanceof EngineError) throw err;
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') throw missing();
      throw this.corrupt(`cannot read ${what}: ${(err as Error).message}`);
    }
    if (size > MAX_MANIFEST_BYTES) throw this.corrupt(`${what} is larger than ${MAX_MANIFEST_BYTES} bytes`);
    try {
      return await readFile(file);
    } catch (err) {
      throw this.corrupt(`cannot read ${what}: ${(err as Error).message}`);
    }
  }

  private async checkLayoutDir(): Promise<void> {
    const { dir } = this.reference;
    try {
      if (!(await stat(dir)).isDirectory()) throw this.notFound('not a directory');
    } catch (err) {
      if (err instanceof EngineError) throw err;
      throw this.notFound(errnoCode(err) === 'ENOENT' ? 'no such directory' : `cannot open it: ${(err as Error).message}`);
    }
    const marker = await this.readSmallFile(path.join(dir, 'oci-layout'), 'oci-layout', () =>
      this.notFound('not an OCI image layout (it has no oci-layout file)'),
    );
    let version: unknown;
    try {
      version = (JSON.parse(marker.toString('utf8')) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch {
      throw this.corrupt('its oci-layout file is not JSON');
    }
    if (typeof version !== 'string') throw this.corrupt('its oci-layout file has no imageLayoutVersion');
  }

  /** The index.json entry the reference names: by digest, by tag, or the default. */
  private async chooseEntry(): Promise<Descriptor> {
    const bytes = await this.readSmallFile(path.join(this.reference.dir, 'index.json'), 'index.json', () =>
      this.notFound('not an OCI image layout (it has no index.json)'),
    );
    let index;
    try {
      index = parseManifest(bytes, OCI_INDEX);
    } catch (err) {
      if (err instanceof MalformedManifestError) throw this.corrupt(`index.json is malformed: ${err.message}`);
      throw err;
    }
    if (index.kind !== 'index') throw this.corrupt('index.json is not an image index');
    const entries = index.manifests;
    const { digest, tag } = this.reference;

    if (digest !== undefined) {
      const byDigest = entries.find((d) => d.digest === digest);
      if (byDigest) return byDigest;
      // Not listed at top level (e.g. a platform manifest of a listed index): read the blob itself.
      const blob = this.blobPath(digest);
      const info = await stat(blob).catch(() => undefined);
      if (!info?.isFile()) throw this.notFound(`no manifest with digest ${digest}`);
      return { mediaType: '', digest, size: info.size };
    }

    const wanted = tag ?? DEFAULT_TAG;
    const tagged = entries.filter((d) => d.annotations?.[REF_NAME] === wanted);
    // Several entries under one tag behave like an index: pick the platform.
    if (tagged.length > 1) return selectPlatformManifest({ kind: 'index', mediaType: OCI_INDEX, manifests: tagged }, this.image);
    const [first] = tagged;
    if (first) return first;
    const [only] = entries;
    if (tag === undefined && only !== undefined && entries.length === 1) return only;
    const tags = [...new Set(entries.map((d) => d.annotations?.[REF_NAME]).filter((t): t is string => t !== undefined))];
    throw this.notFound(
      `no image tagged ${wanted}` + (tags.length > 0 ? ` (tags: ${tags.join(', ')})` : ' (it holds no tagged image)'),
    );
  }

  async fetchRoot(): Promise<RootManifest> {
    await this.checkLayoutDir();
    const entry = await this.chooseEntry();
    const bytes = await this.readSmallFile(this.blobPath(entry.digest), `manifest ${entry.digest}`, () =>
      this.notFound(`manifest blob ${entry.digest} is missing`),
    );
    verifyManifestBytes(this, bytes, entry);
    return { bytes, ...(entry.mediaType === '' ? {} : { contentType: entry.mediaType }), digest: entry.digest };
  }

  async fetchManifest(descriptor: Descriptor): Promise<RawManifest> {
    const bytes = await this.readSmallFile(this.blobPath(descriptor.digest), `manifest ${descriptor.digest}`, () =>
      this.notFound(`manifest blob ${descriptor.digest} is missing`),
    );
    return { bytes, contentType: descriptor.mediaType };
  }

  async openBlob(descriptor: Descriptor, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const file = this.blobPath(descriptor.digest);
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) throw this.notFound(`blob ${descriptor.digest} is missing`);
    return this.readBlob(file, descriptor.digest, signal);
  }

  /** The blob's bytes; a read failure names the blob instead of surfacing as a bare errno. */
  private async *readBlob(file: string, digest: string, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    const stream = createReadStream(file, { signal });
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) yield chunk;
    } catch (err) {
      if (signal.aborted) throw err;
      throw this.corrupt(`cannot read blob ${digest}: ${(err as Error).message}`);
    } finally {
      stream.destroy();
    }
  }
}
