/**
 * An image in an OCI image layout directory (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), as
 * skopeo, umoci and `wasm-engine pack` write them. The tag is the `org.opencontainers.image.ref.name`
 * annotation of an `index.json` entry. A layout is local, so a corrupt one is a bad image
 * (INVALID_FUNCTION_IMAGE) rather than an upstream failure, and so is a FIFO, socket or device
 * where a file or the layout directory should be: refused before it is opened (local-file.ts).
 * Every file operation races the pull's deadline.
 */
import type { FileHandle } from 'node:fs/promises';
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
import { LocalFileError, kindOf, openRegularFile, readRegularFile, statLocal } from './local-file.js';

const REF_NAME = 'org.opencontainers.image.ref.name';

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

  /** A LocalFileError about `what` as this source's error; anything else (the deadline) as is. */
  private localError(err: unknown, what: string, missing: () => EngineError): unknown {
    if (!(err instanceof LocalFileError)) return err;
    if (err.problem === 'missing' || err.problem === 'directory') return missing();
    if (err.problem === 'special') return this.corrupt(`${what} is ${err.message}`);
    return this.corrupt(`cannot read ${what}: ${err.message}`);
  }

  private async readSmallFile(file: string, what: string, missing: () => EngineError, signal: AbortSignal): Promise<Buffer> {
    try {
      return await readRegularFile(
        file,
        MAX_MANIFEST_BYTES,
        () => this.corrupt(`${what} is larger than ${MAX_MANIFEST_BYTES} bytes`),
        signal,
      );
    } catch (err) {
      throw this.localError(err, what, missing);
    }
  }

  private async checkLayoutDir(signal: AbortSignal): Promise<void> {
    const { dir } = this.reference;
    let info;
    try {
      info = await statLocal(dir, signal);
    } catch (err) {
      if (!(err instanceof LocalFileError)) throw err;
      throw this.notFound(err.problem === 'missing' ? 'no such directory' : `cannot open it: ${err.message}`);
    }
    if (!info.isDirectory()) {
      if (!info.isFile()) throw this.corrupt(`${kindOf(info)}, not a directory`);
      throw this.notFound('not a directory');
    }
    const marker = await this.readSmallFile(
      path.join(dir, 'oci-layout'),
      'oci-layout',
      () => this.notFound('not an OCI image layout (it has no oci-layout file)'),
      signal,
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
  private async chooseEntry(signal: AbortSignal): Promise<Descriptor> {
    const bytes = await this.readSmallFile(
      path.join(this.reference.dir, 'index.json'),
      'index.json',
      () => this.notFound('not an OCI image layout (it has no index.json)'),
      signal,
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
      let info;
      try {
        info = await statLocal(blob, signal);
      } catch (err) {
        if (err instanceof LocalFileError) throw this.notFound(`no manifest with digest ${digest}`);
        throw err;
      }
      if (!info.isFile()) {
        if (info.isDirectory()) throw this.notFound(`no manifest with digest ${digest}`);
        throw this.corrupt(`manifest ${digest} is ${kindOf(info)}, not a regular file`);
      }
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

  async fetchRoot(signal: AbortSignal): Promise<RootManifest> {
    await this.checkLayoutDir(signal);
    const entry = await this.chooseEntry(signal);
    const bytes = await this.readSmallFile(
      this.blobPath(entry.digest),
      `manifest ${entry.digest}`,
      () => this.notFound(`manifest blob ${entry.digest} is missing`),
      signal,
    );
    verifyManifestBytes(this, bytes, entry);
    return { bytes, ...(entry.mediaType === '' ? {} : { contentType: entry.mediaType }), digest: entry.digest };
  }

  async fetchManifest(descriptor: Descriptor, signal: AbortSignal): Promise<RawManifest> {
    const bytes = await this.readSmallFile(
      this.blobPath(descriptor.digest),
      `manifest ${descriptor.digest}`,
      () => this.notFound(`manifest blob ${descriptor.digest} is missing`),
      signal,
    );
    return { bytes, contentType: descriptor.mediaType };
  }

  async openBlob(descriptor: Descriptor, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const file = this.blobPath(descriptor.digest);
    let handle;
    try {
      ({ handle } = await openRegularFile(file, signal));
    } catch (err) {
      throw this.localError(err, `blob ${descriptor.digest}`, () => this.notFound(`blob ${descriptor.digest} is missing`));
    }
    return this.readBlob(handle, descriptor.digest, signal);
  }

  /**
   * The blob's bytes, read through the handle that was checked; a read failure names the blob
   * instead of surfacing as a bare errno. The stream closes the handle when it ends.
   */
  private async *readBlob(handle: FileHandle, digest: string, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    const stream = handle.createReadStream({ signal });
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
