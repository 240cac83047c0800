/**
 * Reads one image layer, pushed to it chunk by chunk while it downloads: either the layer is the
 * module itself (a Wasm artifact layer, or any blob starting with `\0asm`), or a tar archive (gzip
 * sniffed from the bytes, not trusted from the media type) of which only the regular `*.wasm` files
 * and the entries that can hide them from lower layers are kept. Nothing is written to disk.
 *
 * The caller verifies the blob's digest alongside; whatever this reader concludes is only used
 * once that verification passed.
 */
import { posix } from 'node:path';
import { createGunzip, type Gunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { EngineError } from '../errors.js';
import type { Budget } from './budget.js';
import type { Descriptor } from './manifest.js';
import { TAR_LAYER_TYPES, WASM_COMPONENT_LAYER, WASM_MODULE_LAYER_TYPES } from './media-types.js';
import { COMPONENTS_UNSUPPORTED, hasWasmMagic } from './wasm-binary.js';
import { shortDigest } from './digest.js';

/** What one tar layer does to the image's file tree, as far as `*.wasm` files are concerned. */
export interface TreeChanges {
  /** Regular files named `*.wasm` this layer adds, by absolute path in the image. */
  wasmFiles: Map<string, Buffer>;
  /** Every other path this layer sets: a `dir` keeps what lower layers put under it, `other` hides it. */
  otherEntries: Map<string, 'dir' | 'other'>;
  /** Paths deleted from lower layers (`.wh.NAME` entries). */
  whiteouts: Set<string>;
  /** Directories whose lower-layer contents are hidden (`.wh..wh..opq` entries). */
  opaqueDirs: Set<string>;
}

export type LayerContent =
  | { kind: 'module'; bytes: Buffer }
  | { kind: 'tree'; changes: TreeChanges }
  | { kind: 'ignored' };

export interface LayerLimits {
  /** Decompressed bytes, shared by all layers of one image (the tar-bomb guard). */
  unpacked: Budget;
  /** Tar entries, shared by all layers of one image (bounds the bookkeeping per path). */
  entries: Budget;
}

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const REGULAR_FILE_TYPES: ReadonlySet<string> = new Set(['File', 'OldFile', 'ContiguousFile']);
const WHITEOUT_PREFIX = '.wh.';
const OPAQUE_WHITEOUT = '.wh..wh..opq';
/** Enough bytes to tell wasm, gzip, zstd and tar apart. */
const SNIFF_BYTES = 4;

function startsWith(bytes: Uint8Array, magic: number[]): boolean {
  return bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b);
}

function layerName(descriptor: Descriptor): string {
  return `layer ${shortDigest(descriptor.digest)} (${descriptor.mediaType})`;
}

function imageError(message: string): EngineError {
  return new EngineError('INVALID_FUNCTION_IMAGE', message);
}

interface SyncSink {
  write(chunk: Buffer): void;
  end(): Promise<void>;
}

/** Keeps every byte: the layer is the module. */
class CollectSink implements SyncSink {
  private readonly chunks: Buffer[] = [];
  write(chunk: Buffer): void {
    this.chunks.push(chunk);
  }
  async end(): Promise<void> {}
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Drops every byte: a layer that is neither a module nor a filesystem. */
class IgnoreSink implements SyncSink {
  write(): void {}
  async end(): Promise<void> {}
}

/** Absolute, normalised path of a tar entry; `..` cannot climb above the root. */
export function normalizeEntryPath(entryPath: string): string {
  const normalized = posix.normalize(`/${entryPath}`);
  return normalized.length > 1 && normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

/** Feeds bytes to node-tar's streaming parser and records the entries that matter. */
class TarSink implements SyncSink {
  readonly changes: TreeChanges = {
    wasmFiles: new Map(),
    otherEntries: new Map(),
    whiteouts: new Set(),
    opaqueDirs: new Set(),
  };
  private readonly parser: Parser;
  private failure: Error | undefined;
  /** An all-zero stream is a valid empty archive; anything else must parse. */
  private sawNonZero = false;

  constructor(
    private readonly name: string,
    private readonly limits: LayerLimits,
  ) {
    this.parser = new Parser({
      // Not strict: node-tar then reports problems as warnings, which we sort below (an empty
      // archive warns "Unrecognized archive format" yet is a legitimate layer).
      strict: false,
      onwarn: (code: string, message: string | Error) => this.onWarning(code, message),
      onReadEntry: (entry: ReadEntry) => this.onEntry(entry),
    });
    this.parser.on('error', (err: Error) => this.fail(imageError(`${this.name} is not a valid tar archive: ${err.message}`)));
  }

  private fail(err: Error): void {
    this.failure ??= err;
  }

  private onWarning(code: string, message: string | Error): void {
    const text = message instanceof Error ? message.message : message;
    if (code === 'TAR_ENTRY_INVALID') {
      this.fail(imageError(`${this.name} is not a valid tar archive: ${text}`));
    } else if (code === 'TAR_BAD_ARCHIVE') {
      if (/unrecognized archive format/i.test(text) && !this.sawNonZero) return;
      this.fail(imageError(`${this.name} is not a valid tar archive: ${text}`));
    }
    // Other warnings (unsupported entry types, informational) do not affect which files exist.
  }

  private onEntry(entry: ReadEntry): void {
    const changes = this.changes;
    try {
      this.limits.entries.take(1);
    } catch (err) {
      this.fail(err as Error);
      entry.resume();
      return;
    }
    const path = normalizeEntryPath(entry.path);
    if (path === '/' || this.failure) {
      entry.resume();
      return;
    }
    const dir = posix.dirname(path);
    const base = posix.basename(path);
    if (base === OPAQUE_WHITEOUT) {
      changes.opaqueDirs.add(dir);
      entry.resume();
      return;
    }
    if (base.startsWith(WHITEOUT_PREFIX)) {
      changes.whiteouts.add(posix.join(dir, base.slice(WHITEOUT_PREFIX.length)));
      entry.resume();
      return;
    }
    // A later entry for the same path within one layer replaces the earlier one.
    changes.wasmFiles.delete(path);
    changes.otherEntries.delete(path);
    if (REGULAR_FILE_TYPES.has(entry.type) && base.endsWith('.wasm')) {
      const chunks: Buffer[] = [];
      entry.on('data', (chunk: Buffer) => chunks.push(chunk));
      entry.on('end', () => changes.wasmFiles.set(path, Buffer.concat(chunks)));
      return;
    }
    // Symlinks and hard links named *.wasm are not followed: only regular files count.
    changes.otherEntries.set(path, entry.type === 'Directory' ? 'dir' : 'other');
    entry.resume();
  }

  write(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    if (!this.sawNonZero && chunk.some((b) => b !== 0)) this.sawNonZero = true;
    this.parser.write(chunk);
    if (this.failure) throw this.failure;
  }

  async end(): Promise<void> {
    if (this.failure) throw this.failure;
    await new Promise<void>((resolve) => {
      this.parser.once('end', () => resolve());
      this.parser.once('close', () => resolve());
      this.parser.once('abort', () => resolve());
      this.parser.end();
    });
    if (this.failure) throw this.failure;
  }
}

/** Decides from the first bytes what a (decompressed) stream is, then forwards to the right sink. */
class SniffSink implements SyncSink {
  private head: Buffer[] = [];
  private headLength = 0;
  private target: SyncSink | undefined;
  private collected: CollectSink | undefined;
  private tar: TarSink | undefined;

  constructor(
    private readonly descriptor: Descriptor,
    private readonly limits: LayerLimits,
  ) {}

  private choose(head: Buffer): SyncSink {
    const name = layerName(this.descriptor);
    // Whatever the media type claims: `oras push` stores a raw module under a tar type.
    if (hasWasmMagic(head)) return (this.collected = new CollectSink());
    if (WASM_MODULE_LAYER_TYPES.has(this.descriptor.mediaType)) {
      throw imageError(`${name} does not hold a WebAssembly module (no \\0asm magic)`);
    }
    // Layers of other types (configs, data, signatures) are not part of the file tree.
    if (!TAR_LAYER_TYPES.has(this.descriptor.mediaType)) return new IgnoreSink();
    if (startsWith(head, ZSTD_MAGIC)) throw imageError(`${name} is zstd-compressed, which is not supported (use gzip)`);
    if (startsWith(head, GZIP_MAGIC)) {
      // The reader undoes one gzip level; a second one would escape the unpacked budget.
      throw imageError(`${name} is compressed twice, which is not supported`);
    }
    return (this.tar = new TarSink(name, this.limits));
  }

  write(chunk: Buffer): void {
    if (this.target) {
      this.target.write(chunk);
      return;
    }
    this.head.push(chunk);
    this.headLength += chunk.length;
    if (this.headLength >= SNIFF_BYTES) this.flushHead();
  }

  private flushHead(): void {
    const head = Buffer.concat(this.head);
    this.head = [];
    this.target = this.choose(head);
    this.target.write(head);
  }

  async end(): Promise<void> {
    if (!this.target) this.flushHead();
    await this.target?.end();
  }

  content(): LayerContent {
    if (this.collected) return { kind: 'module', bytes: this.collected.bytes() };
    if (this.tar) return { kind: 'tree', changes: this.tar.changes };
    return { kind: 'ignored' };
  }
}

function waitWritable(stream: Gunzip): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.once('drain', done);
    stream.once('close', done);
  });
}

/** Gunzips into a SniffSink, counting every decompressed byte against the unpacked budget. */
class GunzipSink {
  private readonly gunzip: Gunzip = createGunzip();
  private failure: Error | undefined;
  private readonly finished: Promise<void>;

  constructor(
    private readonly inner: SniffSink,
    limits: LayerLimits,
    name: string,
  ) {
    this.gunzip.on('data', (chunk: Buffer) => {
      if (this.failure) return;
      try {
        limits.unpacked.take(chunk.length);
        inner.write(chunk);
      } catch (err) {
        this.failure = err as Error;
        // Stop decompressing at once: this is where a gzip bomb is defused.
        this.gunzip.destroy();
      }
    });
    this.finished = new Promise((resolve) => {
      this.gunzip.once('end', () => resolve());
      this.gunzip.once('close', () => resolve());
      this.gunzip.once('error', (err: Error) => {
        this.failure ??= imageError(`${name} is not valid gzip: ${err.message}`);
        resolve();
      });
    });
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    if (!this.gunzip.write(chunk)) await waitWritable(this.gunzip);
    if (this.failure) throw this.failure;
  }

  async end(): Promise<void> {
    if (this.failure) throw this.failure;
    this.gunzip.end();
    await this.finished;
    if (this.failure) throw this.failure;
    await this.inner.end();
  }
}

/**
 * Reads one layer: `write` each chunk as it arrives, then `end` for the result. Throws
 * INVALID_FUNCTION_IMAGE for a component layer, a Wasm-typed layer that is not a module, zstd or
 * nested compression, a corrupt archive, or a layer over the unpacked budget.
 */
export class LayerReader {
  private head: Buffer[] = [];
  private headLength = 0;
  /** Set once the first bytes have been seen. */
  private sniff: SniffSink | undefined;
  private gunzip: GunzipSink | undefined;

  constructor(
    private readonly descriptor: Descriptor,
    private readonly limits: LayerLimits,
  ) {
    if (descriptor.mediaType === WASM_COMPONENT_LAYER) {
      throw imageError(`${layerName(descriptor)} is a component layer: ${COMPONENTS_UNSUPPORTED}`);
    }
  }

  async write(chunk: Uint8Array): Promise<void> {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.sniff) {
      await this.forward(buffer);
      return;
    }
    this.head.push(buffer);
    this.headLength += buffer.length;
    if (this.headLength >= SNIFF_BYTES) await this.decide();
  }

  private async decide(): Promise<void> {
    const head = Buffer.concat(this.head);
    this.head = [];
    this.sniff = new SniffSink(this.descriptor, this.limits);
    // Compression is sniffed, not read from the media type: tools disagree on whether a Docker
    // "tar.gzip" layer is compressed. Only filesystem layers are ever decompressed.
    if (startsWith(head, GZIP_MAGIC) && TAR_LAYER_TYPES.has(this.descriptor.mediaType)) {
      this.gunzip = new GunzipSink(this.sniff, this.limits, layerName(this.descriptor));
    }
    if (head.length > 0) await this.forward(head);
  }

  private async forward(chunk: Buffer): Promise<void> {
    if (this.gunzip) await this.gunzip.write(chunk);
    else this.sniff?.write(chunk);
  }

  async end(): Promise<LayerContent> {
    if (!this.sniff) await this.decide();
    const sniff = this.sniff as SniffSink; // decide() always sets it
    if (this.gunzip) await this.gunzip.end();
    else await sniff.end();
    return sniff.content();
  }
}
