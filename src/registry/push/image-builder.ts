/**
 * Builds a function image in memory from one `.wasm` file, in one of two shapes:
 *
 * - `docker`: what `FROM scratch` + `ADD f.wasm /` gives — one tar+gzip layer holding the file at
 *   `/`, a Docker image config with platform `wasi/wasm` (and the file as entrypoint, as Docker's
 *   Wasm shims expect), and a Docker v2 schema 2 manifest. Every registry and tool reads it.
 * - `wasm`: the CNCF TAG Runtime Wasm OCI artifact — config `application/vnd.wasm.config.v0+json`
 *   (`architecture: "wasm"`, `os: "wasip1"`, `layerDigests`) and one `application/wasm` layer that
 *   is the module itself, in an OCI image manifest. wasmCloud, runwasi and Spin read it.
 *
 * Images are reproducible: timestamps are the Unix epoch (as ko and Bazel do), tar headers carry
 * no owner, and gzip has no time stamp, so pushing the same file twice gives the same digest.
 */
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Header, Pax, type HeaderData } from 'tar';
import { EngineError } from '../../errors.js';
import { sha256Digest } from '../digest.js';
import { DOCKER_MANIFEST, OCI_MANIFEST } from '../media-types.js';
import { checkCoreModule } from '../wasm-binary.js';

export type ImageFormat = 'docker' | 'wasm';
export const IMAGE_FORMATS: readonly ImageFormat[] = ['docker', 'wasm'];

export const DOCKER_IMAGE_CONFIG = 'application/vnd.docker.container.image.v1+json';
export const DOCKER_LAYER_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip';
export const OCI_IMAGE_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const WASM_CONFIG = 'application/vnd.wasm.config.v0+json';
export const WASM_LAYER = 'application/wasm';
const TITLE = 'org.opencontainers.image.title';
const EPOCH = '1970-01-01T00:00:00Z';

export interface ImageBlob {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
  annotations?: Record<string, string>;
}

export interface BuiltImage {
  format: ImageFormat;
  /** Name of the module file inside the image. */
  fileName: string;
  platform: { os: string; architecture: string };
  manifest: { mediaType: string; digest: string; size: number; bytes: Buffer };
  config: ImageBlob;
  layers: ImageBlob[];
}

/** The narrow part of Node's global WebAssembly object this needs (lib ES2022 does not declare it). */
const wasmApi = (globalThis as unknown as { WebAssembly: { validate(bytes: Uint8Array): boolean } }).WebAssembly;

/** Throws INVALID_FUNCTION_IMAGE unless `bytes` is a valid core WebAssembly module; `what` names it. */
export function checkPushableModule(bytes: Uint8Array, what: string): void {
  checkCoreModule(bytes, what);
  if (!wasmApi.validate(bytes)) {
    throw new EngineError('INVALID_FUNCTION_IMAGE', `${what} is not valid WebAssembly (WebAssembly.validate refused it)`);
  }
}

function blob(mediaType: string, bytes: Buffer, annotations?: Record<string, string>): ImageBlob {
  return { mediaType, digest: sha256Digest(bytes), size: bytes.length, bytes, ...(annotations ? { annotations } : {}) };
}

function descriptor(b: ImageBlob): Record<string, unknown> {
  return { mediaType: b.mediaType, digest: b.digest, size: b.size, ...(b.annotations ? { annotations: b.annotations } : {}) };
}

/** One tar header (with a PAX header first when the name does not fit ustar). */
function tarHeader(data: HeaderData): Buffer {
  const header = new Header(data);
  const block = Buffer.alloc(512);
  const needsPax = header.encode(block, 0);
  if (!needsPax) return block;
  // Pax.encode() returns the extended header block and its body, ready to precede the entry.
  return Buffer.concat([new Pax(data).encode(), block]);
}

/** A tar holding `./` and the module at `/NAME`, with fixed owner, modes and times. */
export function moduleTar(fileName: string, module: Uint8Array): Buffer {
  const common = { uid: 0, gid: 0, uname: '', gname: '', mtime: new Date(0) };
  const body = Buffer.from(module.buffer, module.byteOffset, module.byteLength);
  const padding = Buffer.alloc((512 - (body.length % 512)) % 512);
  return Buffer.concat([
    tarHeader({ ...common, path: './', type: 'Directory', mode: 0o755, size: 0 }),
    tarHeader({ ...common, path: fileName, type: 'File', mode: 0o755, size: body.length }),
    body,
    padding,
    Buffer.alloc(1024),
  ]);
}

/** The file name the module gets inside the image: the file's own, with `.wasm` added if missing. */
export function imageFileName(file: string): string {
  const base = path.basename(file);
  return base.endsWith('.wasm') ? base : `${base}.wasm`;
}

export interface BuildOptions {
  format: ImageFormat;
  /** Name of the module inside the image, e.g. `hello.wasm`. */
  fileName: string;
  /**
   * For the `docker` format, the media types of manifest, config and layer: Docker's (the default,
   * for registries) or their OCI equivalents (for OCI layouts, where skopeo only looks for OCI
   * manifests). The config and layer bytes are the same either way.
   */
  mediaTypes?: 'docker' | 'oci';
}

export function buildImage(module: Uint8Array, options: BuildOptions): BuiltImage {
  const { format, fileName } = options;
  checkPushableModule(module, fileName);
  if (format === 'docker') {
    const oci = options.mediaTypes === 'oci';
    const manifestType = oci ? OCI_MANIFEST : DOCKER_MANIFEST;
    const tar = moduleTar(fileName, module);
    // gzip's header carries no time stamp or name here, so the same tar always compresses the same.
    const layer = blob(oci ? OCI_LAYER_GZIP : DOCKER_LAYER_GZIP, gzipSync(tar, { level: 9 }));
    const platform = { os: 'wasi', architecture: 'wasm' };
    const config = blob(
      oci ? OCI_IMAGE_CONFIG : DOCKER_IMAGE_CONFIG,
      Buffer.from(
        JSON.stringify({
          architecture: platform.architecture,
          os: platform.os,
          config: { Entrypoint: [`/${fileName}`] },
          created: EPOCH,
          history: [{ created: EPOCH, created_by: `wasm-engine push: ADD ${fileName} /` }],
          rootfs: { type: 'layers', diff_ids: [sha256Digest(tar)] },
        }),
      ),
    );
    const manifest = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: manifestType, config: descriptor(config), layers: [descriptor(layer)] }),
    );
    return { format, fileName, platform, manifest: { mediaType: manifestType, digest: sha256Digest(manifest), size: manifest.length, bytes: manifest }, config, layers: [layer] };
  }
  const layer = blob(WASM_LAYER, Buffer.from(module.buffer, module.byteOffset, module.byteLength), { [TITLE]: fileName });
  const platform = { os: 'wasip1', architecture: 'wasm' };
  const config = blob(
    WASM_CONFIG,
    Buffer.from(JSON.stringify({ created: EPOCH, architecture: platform.architecture, os: platform.os, layerDigests: [layer.digest] })),
  );
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(config), layers: [descriptor(layer)] }),
  );
  return { format, fileName, platform, manifest: { mediaType: OCI_MANIFEST, digest: sha256Digest(manifest), size: manifest.length, bytes: manifest }, config, layers: [layer] };
}
