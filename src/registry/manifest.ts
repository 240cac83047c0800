/**
 * Reads manifests (OCI image manifest and index, Docker v2 schema 2 manifest and manifest list)
 * from their exact bytes, and picks the image a multi-platform index holds for WebAssembly.
 * Validation is strict enough that later code can trust the shapes it reads.
 */
import { EngineError } from '../errors.js';
import { isSupportedDigest } from './digest.js';
import {
  DOCKER_SCHEMA1,
  DOCKER_SCHEMA1_SIGNED,
  IMAGE_MANIFEST_TYPES,
  INDEX_TYPES,
  OCI_INDEX,
  OCI_MANIFEST,
  bareMediaType,
} from './media-types.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
}

export interface ImageManifest {
  kind: 'manifest';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

export type Manifest = ImageIndex | ImageManifest;

/** The manifest bytes are not a manifest we can read; the caller decides whose fault that is. */
export class MalformedManifestError extends Error {
  override name = 'MalformedManifestError';
}

/** Registries answer within this; a larger "manifest" is refused rather than buffered. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw new MalformedManifestError(`${where} is not an object`);
  const { mediaType, digest, size, platform, annotations } = value;
  if (typeof mediaType !== 'string' || mediaType === '') {
    throw new MalformedManifestError(`${where} has no mediaType`);
  }
  if (typeof digest !== 'string' || !isSupportedDigest(digest)) {
    throw new MalformedManifestError(`${where} has a missing or unsupported digest ${JSON.stringify(digest)}`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new MalformedManifestError(`${where} has no valid size`);
  }
  const descriptor: Descriptor = { mediaType: bareMediaType(mediaType), digest, size };
  if (isObject(platform)) {
    if (typeof platform.os === 'string' && typeof platform.architecture === 'string') {
      descriptor.platform = { os: platform.os, architecture: platform.architecture };
      if (typeof platform.variant === 'string') descriptor.platform.variant = platform.variant;
    }
  }
  if (isObject(annotations)) {
    const strings: Record<string, string> = {};
    for (const [key, val] of Object.entries(annotations)) if (typeof val === 'string') strings[key] = val;
    descriptor.annotations = strings;
  }
  return descriptor;
}

function parseDescriptors(value: unknown, field: string): Descriptor[] {
  if (!Array.isArray(value)) throw new MalformedManifestError(`"${field}" is not an array`);
  return value.map((item, i) => parseDescriptor(item, `${field}[${i}]`));
}

/**
 * Parses manifest bytes. `contentType` is what the source said the bytes are (HTTP Content-Type or
 * an index descriptor's mediaType); when the manifest names its own mediaType the two must agree,
 * otherwise a client could be made to read one thing as another.
 */
export function parseManifest(bytes: Uint8Array, contentType: string | undefined): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new MalformedManifestError('it is not JSON');
  }
  if (!isObject(json)) throw new MalformedManifestError('it is not a JSON object');

  const declared = typeof json.mediaType === 'string' ? bareMediaType(json.mediaType) : undefined;
  const given = contentType === undefined ? undefined : bareMediaType(contentType);
  const givenIsManifestType = given !== undefined && (INDEX_TYPES.has(given) || IMAGE_MANIFEST_TYPES.has(given));

  if (json.schemaVersion === 1 || given === DOCKER_SCHEMA1 || given === DOCKER_SCHEMA1_SIGNED) {
    throw new MalformedManifestError('Docker schema 1 manifests are not supported (push the image again with a current tool)');
  }
  if (json.schemaVersion !== 2) throw new MalformedManifestError('schemaVersion is not 2');
  if (declared !== undefined && givenIsManifestType && declared !== given) {
    throw new MalformedManifestError(`its mediaType ${declared} does not match the announced type ${given}`);
  }

  // Precedence: the manifest's own field, then what the source announced, then the shape (an OCI
  // manifest may omit mediaType, and some servers answer application/json).
  let mediaType = declared ?? (givenIsManifestType ? given : undefined);
  if (mediaType === undefined) {
    if (Array.isArray(json.manifests)) mediaType = OCI_INDEX;
    else if (Array.isArray(json.layers)) mediaType = OCI_MANIFEST;
    else throw new MalformedManifestError('it has neither "manifests" nor "layers"');
  }

  if (INDEX_TYPES.has(mediaType)) {
    return { kind: 'index', mediaType, manifests: parseDescriptors(json.manifests, 'manifests') };
  }
  if (IMAGE_MANIFEST_TYPES.has(mediaType)) {
    return {
      kind: 'manifest',
      mediaType,
      config: parseDescriptor(json.config, 'config'),
      layers: parseDescriptors(json.layers, 'layers'),
    };
  }
  throw new MalformedManifestError(`its media type ${mediaType} is not a manifest type this engine reads`);
}

function isAttestation(descriptor: Descriptor): boolean {
  const { platform, annotations } = descriptor;
  if (platform?.os === 'unknown' && platform.architecture === 'unknown') return true;
  return annotations?.['vnd.docker.reference.type'] === 'attestation-manifest';
}

function isManifestType(mediaType: string): boolean {
  return INDEX_TYPES.has(mediaType) || IMAGE_MANIFEST_TYPES.has(mediaType);
}

function platformName(descriptor: Descriptor): string {
  const p = descriptor.platform;
  if (!p) return '(no platform)';
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/** WebAssembly platforms in order of preference: the SPEC's `wasi/wasm`, then `wasip1/wasm` (CNCF artifact). */
const WASM_OSES = ['wasi', 'wasip1'];

/**
 * Picks the entry of an index to run: the `wasi/wasm` platform, else the only entry that is not an
 * attestation. `image` names the image for the message when neither exists.
 */
export function selectPlatformManifest(index: ImageIndex, image: string): Descriptor {
  const candidates = index.manifests.filter((d) => isManifestType(d.mediaType) && !isAttestation(d));
  for (const os of WASM_OSES) {
    const match = candidates.find((d) => d.platform?.os === os && d.platform.architecture === 'wasm');
    if (match) return match;
  }
  const [only] = candidates;
  if (only !== undefined && candidates.length === 1) return only;
  if (candidates.length === 0) {
    throw new EngineError('INVALID_FUNCTION_IMAGE', `image index of ${image} lists no image manifest to run`);
  }
  const offered = [...new Set(candidates.map(platformName))].join(', ');
  throw new EngineError(
    'INVALID_FUNCTION_IMAGE',
    `image index of ${image} has no wasi/wasm platform entry; it offers ${offered}`,
  );
}
