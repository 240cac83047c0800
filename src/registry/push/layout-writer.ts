/**
 * Writes a built image into an OCI image layout directory (`oci-layout`, `blobs/sha256/…`,
 * `index.json`), as skopeo and umoci do, tagging it with `org.opencontainers.image.ref.name`.
 * An existing layout keeps its other images; an entry with the same tag is replaced. Blobs are
 * written before the index that names them, each through a temporary file and a rename, so an
 * interrupted write never leaves an index pointing at a missing or partial blob.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { EngineError } from '../../errors.js';
import { parseDigest } from '../digest.js';
import { OCI_INDEX } from '../media-types.js';
import type { BuiltImage, ImageBlob } from './image-builder.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
const LAYOUT_VERSION = '1.0.0';

async function writeAtomic(file: string, data: Buffer | string): Promise<void> {
  const temp = path.join(path.dirname(file), `.tmp-${path.basename(file)}-${randomBytes(6).toString('hex')}`);
  try {
    await writeFile(temp, data, { flush: true });
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

function layoutError(dir: string, message: string): EngineError {
  return new EngineError('INVALID_REQUEST', `OCI layout ${dir}: ${message}`);
}

type IndexEntry = Record<string, unknown> & { annotations?: Record<string, unknown> };

async function readIndex(dir: string): Promise<{ schemaVersion: 2; mediaType?: string; manifests: IndexEntry[] } & Record<string, unknown>> {
  const file = path.join(dir, 'index.json');
  if (!(await exists(file))) return { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] };
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch {
    throw layoutError(dir, 'index.json is not JSON; refusing to overwrite it');
  }
  const index = json as { schemaVersion?: unknown; manifests?: unknown };
  if (typeof json !== 'object' || json === null || !Array.isArray(index.manifests)) {
    throw layoutError(dir, 'index.json is not an image index; refusing to overwrite it');
  }
  return json as { schemaVersion: 2; manifests: IndexEntry[] };
}

export interface LayoutResult {
  dir: string;
  tag: string;
  digest: string;
}

/** Writes `image` into the layout `dir` under `tag`, creating the layout when needed. */
export async function writeOciLayout(image: BuiltImage, dir: string, tag: string): Promise<LayoutResult> {
  await mkdir(dir, { recursive: true });
  const marker = path.join(dir, 'oci-layout');
  if (await exists(marker)) {
    let version: unknown;
    try {
      version = (JSON.parse(await readFile(marker, 'utf8')) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch {
      version = undefined;
    }
    if (typeof version !== 'string') throw layoutError(dir, 'its oci-layout file is not valid');
  } else {
    const entries = (await readdir(dir)).filter((name) => !name.startsWith('.'));
    if (entries.length > 0) throw layoutError(dir, 'the directory is not empty and is not an OCI layout');
  }
  const index = await readIndex(dir);

  const blobs: Array<{ digest: string; bytes: Buffer }> = [
    ...image.layers,
    image.config,
    { digest: image.manifest.digest, bytes: image.manifest.bytes } as Pick<ImageBlob, 'digest' | 'bytes'>,
  ];
  for (const blob of blobs) {
    const parsed = parseDigest(blob.digest);
    if (!parsed) throw new EngineError('INTERNAL', `unsupported digest ${blob.digest}`);
    const blobDir = path.join(dir, 'blobs', parsed.algorithm);
    await mkdir(blobDir, { recursive: true });
    const file = path.join(blobDir, parsed.hex);
    // Content-addressed: a blob already there with that name holds these bytes.
    if (!(await exists(file))) await writeAtomic(file, blob.bytes);
  }

  const entry: IndexEntry = {
    mediaType: image.manifest.mediaType,
    digest: image.manifest.digest,
    size: image.manifest.size,
    platform: image.platform,
    annotations: { [REF_NAME]: tag },
  };
  const manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag);
  manifests.push(entry);
  if (!(await exists(marker))) await writeAtomic(marker, `${JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION })}\n`);
  await writeAtomic(path.join(dir, 'index.json'), `${JSON.stringify({ ...index, schemaVersion: 2, mediaType: OCI_INDEX, manifests })}\n`);
  return { dir, tag, digest: image.manifest.digest };
}
