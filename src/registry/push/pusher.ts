/**
 * Pushes a built image with the OCI Distribution Spec's push API: for each blob a `HEAD` (skipped
 * when the registry has it), else a monolithic upload (`POST` to open a session, `PUT` the bytes
 * with their digest); then the manifest `PUT` under the tag. Authentication asks for pull and push
 * on the repository up front. A failed upload is started again from a new session, a bounded
 * number of times with backoff; so is anything the transport retries (429, 5xx, resets).
 */
import { Readable } from 'node:stream';
import { EngineError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { RegistryConnection } from '../connection.js';
import { shortDigest } from '../digest.js';
import type { RegistryReference } from '../reference.js';
import { RepositoryClient } from '../repository-client.js';
import { discardBody, headerValue, isRetryableNetworkError } from '../transport.js';
import type { TransferProgress } from '../types.js';
import type { BuiltImage, ImageBlob } from './image-builder.js';

export interface PushOptions {
  signal: AbortSignal;
  logger: Logger;
  onProgress?: (event: TransferProgress) => void;
}

export interface PushResult {
  /** `host/repository:tag@sha256:…`: what to deploy to pin exactly this image. */
  pinned: string;
  digest: string;
  mediaType: string;
  /** Blobs uploaded, and blobs the registry already had. */
  uploaded: number;
  skipped: number;
  bytesUploaded: number;
}

/** Upload bodies are handed to the socket in slices so progress can be reported as they go. */
const SLICE_BYTES = 256 * 1024;
const RETRYABLE_UPLOAD_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);

class UploadFailed extends Error {}

export async function pushImage(
  image: BuiltImage,
  reference: RegistryReference,
  connection: RegistryConnection,
  options: PushOptions,
): Promise<PushResult> {
  const client = new RepositoryClient(reference, connection.transport, connection.auth);
  const { signal } = options;
  let uploaded = 0;
  let skipped = 0;
  let bytesUploaded = 0;
  // The config last: some registries check that a manifest's config exists, never the reverse.
  for (const blob of [...image.layers, image.config]) {
    if (await blobExists(client, blob, signal)) {
      skipped += 1;
      options.onProgress?.({ direction: 'upload', phase: 'skipped', digest: blob.digest, total: blob.size, done: 0 });
      continue;
    }
    await uploadBlob(client, blob, options);
    uploaded += 1;
    bytesUploaded += blob.size;
  }

  const tag = reference.tag ?? reference.digest ?? 'latest';
  const what = `manifest of ${reference.registry}/${reference.repository}:${tag}`;
  const response = await client.send(client.url(`manifests/${tag}`), {
    method: 'PUT',
    headers: { 'content-type': image.manifest.mediaType },
    body: image.manifest.bytes,
    access: 'push',
    // Putting the same manifest again is harmless: the registry stores bytes by their digest.
    retry: true,
    signal,
  });
  await client.ensureStatus(response, [201, 200], `push of the ${what}`, 'push');
  const announced = headerValue(response.headers, 'docker-content-digest')?.trim();
  await discardBody(response.body);
  if (announced !== undefined && announced !== image.manifest.digest) {
    throw client.error(`stored the ${what} as ${announced}, not as ${image.manifest.digest}`);
  }
  options.logger.info({ image: reference.canonical, digest: image.manifest.digest, uploaded, skipped }, 'image pushed');
  const name = `${reference.registry}/${reference.repository}`;
  return {
    pinned: `${name}${reference.tag === undefined ? '' : `:${reference.tag}`}@${image.manifest.digest}`,
    digest: image.manifest.digest,
    mediaType: image.manifest.mediaType,
    uploaded,
    skipped,
    bytesUploaded,
  };
}

async function blobExists(client: RepositoryClient, blob: ImageBlob, signal: AbortSignal): Promise<boolean> {
  const response = await client.send(client.url(`blobs/${blob.digest}`), { method: 'HEAD', access: 'push', signal });
  await discardBody(response.body);
  if (response.statusCode === 200) return true;
  if (response.statusCode === 404) return false;
  await client.ensureStatus(response, [200, 404], `blob ${blob.digest}`, 'push');
  return false;
}

async function uploadBlob(client: RepositoryClient, blob: ImageBlob, options: PushOptions): Promise<void> {
  const { signal } = options;
  const retries = client.transport.retries;
  for (let attempt = 0; ; attempt += 1) {
    try {
      await uploadOnce(client, blob, options);
      return;
    } catch (err) {
      // The transport wraps socket failures in EngineError; the cause says whether to try again.
      const retryable = err instanceof UploadFailed || isRetryableNetworkError(err instanceof EngineError ? err.cause : err);
      if (!retryable || attempt >= retries || signal.aborted) {
        throw err instanceof UploadFailed ? client.error(err.message) : err;
      }
      options.logger.debug({ blob: blob.digest, attempt: attempt + 1, err }, 'blob upload failed, starting again');
      await client.transport.backoff(attempt + 1, signal);
    }
  }
}

async function uploadOnce(client: RepositoryClient, blob: ImageBlob, options: PushOptions): Promise<void> {
  const { signal } = options;
  const what = `blob ${shortDigest(blob.digest)}`;
  const start = await client.send(client.url('blobs/uploads/'), { method: 'POST', access: 'push', retry: true, signal });
  await client.ensureStatus(start, [202], `upload of ${what}`, 'push');
  const location = headerValue(start.headers, 'location');
  await discardBody(start.body);
  if (!location) throw client.error(`opened an upload for ${what} without a Location`);
  let url: URL;
  try {
    url = new URL(location, client.url('blobs/uploads/'));
  } catch {
    throw client.error(`answered an invalid upload Location for ${what}`);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && client.transport.allowsPlainHttp(url.host))) {
    throw client.error(`sent the upload of ${what} to ${url.origin}, which is neither HTTPS nor a loopback or insecure host`);
  }
  // Registries put their session state in the query (`_state=`): keep it, add the digest.
  url.searchParams.set('digest', blob.digest);

  const progress = (phase: TransferProgress['phase'], done: number): void =>
    options.onProgress?.({ direction: 'upload', phase, digest: blob.digest, total: blob.size, done });
  progress('start', 0);
  const authorization = client.authorizationFor(url, 'push');
  const response = await client.transport.request(url, {
    method: 'PUT',
    headers: {
      'content-type': 'application/octet-stream',
      'content-length': String(blob.size),
      ...(authorization ? { authorization } : {}),
    },
    body: Readable.from(slices(blob.bytes, (done) => progress('progress', done)), { objectMode: false }),
    retry: false,
    signal,
    peer: client.origin,
  });
  if (RETRYABLE_UPLOAD_STATUSES.has(response.statusCode) || response.statusCode === 401) {
    await discardBody(response.body);
    // A 401 here means the token expired mid-push: the next attempt is challenged afresh.
    if (response.statusCode === 401) client.auth.forget(client.registry, client.repository, 'push');
    throw new UploadFailed(`answered HTTP ${response.statusCode} to the upload of ${what}`);
  }
  await client.ensureStatus(response, [201], `upload of ${what}`, 'push');
  await discardBody(response.body);
  progress('done', blob.size);
}

/** The bytes in slices, reporting how many have been taken by the socket so far. */
async function* slices(bytes: Buffer, onTaken: (done: number) => void): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += SLICE_BYTES) {
    const slice = bytes.subarray(offset, offset + SLICE_BYTES);
    yield slice;
    onTaken(offset + slice.length);
  }
}
