/**
 * An image on a registry, read through the OCI Distribution Spec's pull API: manifests by tag or
 * digest, blobs by digest (following redirects by hand so credentials never leak to another
 * origin, and resuming a download cut short with a `Range` request), with the authentication
 * dance on 401. Verification of what it returns is the resolver's job, except for the root
 * manifest, whose digest only this side can know.
 */
import { EngineError } from '../errors.js';
import type { Authenticator } from './auth.js';
import { digestLike, isSupportedDigest, sha256Digest } from './digest.js';
import type { ImageSource, RawManifest, RootManifest } from './image-resolver.js';
import { MAX_MANIFEST_BYTES, type Descriptor } from './manifest.js';
import { MANIFEST_ACCEPT } from './media-types.js';
import type { RegistryReference } from './reference.js';
import { RepositoryClient } from './repository-client.js';
import {
  discardBody,
  headerValue,
  isRetryableNetworkError,
  readBodyLimited,
  type HttpResponse,
  type RegistryTransport,
} from './transport.js';

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** Registries redirect once (to storage or a CDN); a chain longer than this is a loop. */
const MAX_REDIRECTS = 5;

export class RegistryImageSource implements ImageSource {
  readonly image: string;
  readonly origin: string;
  readonly corruptCode = 'REGISTRY_ERROR' as const;
  private readonly client: RepositoryClient;

  constructor(
    private readonly reference: RegistryReference,
    private readonly transport: RegistryTransport,
    auth: Authenticator,
  ) {
    this.image = reference.canonical;
    this.origin = `registry ${reference.registry}`;
    this.client = new RepositoryClient(reference, transport, auth);
  }

  async fetchRoot(signal: AbortSignal): Promise<RootManifest> {
    const { digest: pinned, tag } = this.reference;
    const what = pinned === undefined ? `image ${this.image}` : `image ${this.image} (manifest ${pinned})`;
    const manifest = await this.getManifest(pinned ?? tag ?? 'latest', what, signal);
    const digest = pinned ?? sha256Digest(manifest.bytes);
    if (pinned !== undefined && digestLike(pinned, manifest.bytes) !== pinned) {
      throw new EngineError(
        'REGISTRY_ERROR',
        `registry ${this.reference.registry} returned a manifest for ${this.image} that does not match the pinned digest (got ${sha256Digest(manifest.bytes)})`,
      );
    }
    if (manifest.announcedDigest !== undefined) {
      if (!isSupportedDigest(manifest.announcedDigest)) {
        throw new EngineError(
          'REGISTRY_ERROR',
          `registry ${this.reference.registry} sent an unusable Docker-Content-Digest ${JSON.stringify(manifest.announcedDigest)}`,
        );
      }
      if (digestLike(manifest.announcedDigest, manifest.bytes) !== manifest.announcedDigest) {
        throw new EngineError(
          'REGISTRY_ERROR',
          `registry ${this.reference.registry} returned a manifest for ${this.image} that does not match its Docker-Content-Digest ${manifest.announcedDigest}`,
        );
      }
    }
    return { bytes: manifest.bytes, ...(manifest.contentType === undefined ? {} : { contentType: manifest.contentType }), digest };
  }

  async fetchManifest(descriptor: Descriptor, signal: AbortSignal): Promise<RawManifest> {
    const manifest = await this.getManifest(descriptor.digest, `manifest ${descriptor.digest} of ${this.image}`, signal);
    return { bytes: manifest.bytes, ...(manifest.contentType === undefined ? {} : { contentType: manifest.contentType }) };
  }

  async openBlob(descriptor: Descriptor, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const first = await this.requestBlob(descriptor, 0, signal);
    return this.resumableBody(descriptor, first, signal);
  }

  /** GETs a blob from byte `offset` on, following redirects; the answer is 200 or 206. */
  private async requestBlob(descriptor: Descriptor, offset: number, signal: AbortSignal): Promise<HttpResponse> {
    const what = `blob ${descriptor.digest} of ${this.image}`;
    const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
    let url = this.client.url(`blobs/${descriptor.digest}`);
    let response = await this.client.send(url, { headers, signal });
    for (let hops = 0; REDIRECT_STATUSES.has(response.statusCode); hops += 1) {
      const location = headerValue(response.headers, 'location');
      await discardBody(response.body);
      if (hops >= MAX_REDIRECTS) throw this.client.error(`redirected more than ${MAX_REDIRECTS} times for ${what}`);
      if (!location) throw this.client.error(`answered ${response.statusCode} without a Location for ${what}`);
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw this.client.error(`redirected to an invalid location for ${what}`);
      }
      if (next.protocol !== 'https:' && !(next.protocol === 'http:' && this.transport.allowsPlainHttp(next.host))) {
        throw this.client.error(`redirected to ${next.origin}, which is neither HTTPS nor a loopback or insecure host`);
      }
      // Credentials are for the registry only: a storage backend or CDN gets a signed URL instead.
      const authorization = this.client.authorizationFor(next);
      url = next;
      response = await this.transport.request(url, {
        headers: { ...headers, ...(authorization ? { authorization } : {}) },
        signal,
        peer: `registry ${this.reference.registry} (redirected to ${url.host})`,
      });
    }
    await this.client.ensureStatus(response, offset > 0 ? [200, 206] : [200], what);
    return response;
  }

  /**
   * The blob's bytes as a stream. When the connection breaks (or ends early) the download goes on
   * from where it stopped with a Range request, up to the transport's retry bound; a server that
   * ignores Range answers 200 with the whole blob, and the part already passed on is skipped.
   * Socket failures become REGISTRY_ERROR; the body is released if not read to the end.
   */
  private async *resumableBody(descriptor: Descriptor, first: HttpResponse, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    let response = first;
    let received = 0;
    for (let resumes = 0; ; ) {
      const body = response.body;
      let skip = response.statusCode === 200 ? received : 0;
      if (response.statusCode === 206) {
        const range = /^bytes (\d+)-/.exec(headerValue(response.headers, 'content-range') ?? '');
        if (!range || Number(range[1]) !== received) {
          body.destroy();
          throw this.client.error(`answered a range request for blob ${descriptor.digest} with the wrong range`);
        }
      }
      let failure: unknown;
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          let piece = chunk;
          if (skip > 0) {
            const dropped = Math.min(skip, piece.length);
            skip -= dropped;
            piece = piece.subarray(dropped);
            if (piece.length === 0) continue;
          }
          received += piece.length;
          yield piece;
        }
      } catch (err) {
        failure = err;
      } finally {
        if (!body.readableEnded) body.destroy();
      }
      // A clean end before the descriptor's size is a cut too; the resolver judges any other size.
      const cut = failure !== undefined ? isRetryableNetworkError(failure) : received < descriptor.size && skip === 0;
      if (!cut || resumes >= this.transport.retries || signal.aborted) {
        if (failure !== undefined) throw this.transport.failure(failure, { peer: this.origin, signal }, resumes + 1);
        return;
      }
      resumes += 1;
      await this.transport.backoff(resumes, signal);
      if (signal.aborted) throw this.transport.failure(failure ?? new Error('aborted'), { peer: this.origin, signal });
      response = await this.requestBlob(descriptor, received, signal);
    }
  }

  private async getManifest(
    reference: string,
    what: string,
    signal: AbortSignal,
  ): Promise<{ bytes: Buffer; contentType?: string; announcedDigest?: string }> {
    const response = await this.client.send(this.client.url(`manifests/${reference}`), { headers: { accept: MANIFEST_ACCEPT }, signal });
    await this.client.ensureStatus(response, [200], what);
    let bytes: Buffer | undefined;
    try {
      bytes = await readBodyLimited(response.body, MAX_MANIFEST_BYTES);
    } catch (err) {
      throw this.transport.failure(err, { peer: this.origin, signal });
    }
    if (!bytes) throw this.client.error(`sent a manifest larger than ${MAX_MANIFEST_BYTES} bytes for ${what}`);
    const contentType = headerValue(response.headers, 'content-type');
    const announcedDigest = headerValue(response.headers, 'docker-content-digest');
    return {
      bytes,
      ...(contentType === undefined ? {} : { contentType }),
      ...(announcedDigest === undefined ? {} : { announcedDigest: announcedDigest.trim() }),
    };
  }
}
