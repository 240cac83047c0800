/**
 * An image on a registry, read through the OCI Distribution Spec's pull API: manifests by tag or
 * digest, blobs by digest (following redirects by hand so credentials never leak to another
 * origin), with the authentication dance on 401. Verification of what it returns is the
 * resolver's job, except for the root manifest, whose digest only this side can know.
 */
import { EngineError } from '../errors.js';
import type { Authenticator } from './auth.js';
import { digestLike, isSupportedDigest, sha256Digest } from './digest.js';
import type { ImageSource, RawManifest, RootManifest } from './image-resolver.js';
import { MAX_MANIFEST_BYTES, type Descriptor } from './manifest.js';
import { MANIFEST_ACCEPT } from './media-types.js';
import type { RegistryReference } from './reference.js';
import { registryAnswerError } from './registry-errors.js';
import {
  discardBody,
  headerValue,
  readBodyLimited,
  type HttpResponse,
  type RegistryTransport,
} from './transport.js';
import { parseWwwAuthenticate } from './www-authenticate.js';

const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** Registries redirect once (to storage or a CDN); a chain longer than this is a loop. */
const MAX_REDIRECTS = 5;
/** Error bodies are read for their message only. */
const MAX_ERROR_BODY = 64 * 1024;

export class RegistryImageSource implements ImageSource {
  readonly image: string;
  readonly origin: string;
  readonly corruptCode = 'REGISTRY_ERROR' as const;
  private readonly base: URL;

  constructor(
    private readonly reference: RegistryReference,
    private readonly transport: RegistryTransport,
    private readonly auth: Authenticator,
  ) {
    this.image = reference.canonical;
    this.origin = `registry ${reference.registry}`;
    this.base = transport.baseUrl(reference.registry);
  }

  async fetchRoot(signal: AbortSignal): Promise<RootManifest> {
    const { digest: pinned, tag } = this.reference;
    const manifest = await this.getManifest(pinned ?? tag ?? 'latest', `image ${this.image}`, signal);
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
    const what = `blob ${descriptor.digest} of ${this.image}`;
    let url = this.url(`blobs/${descriptor.digest}`);
    let response = await this.send(url, undefined, signal);
    for (let hops = 0; REDIRECT_STATUSES.has(response.statusCode); hops += 1) {
      const location = headerValue(response.headers, 'location');
      await discardBody(response.body);
      if (hops >= MAX_REDIRECTS) throw this.error(`redirected more than ${MAX_REDIRECTS} times for ${what}`);
      if (!location) throw this.error(`answered ${response.statusCode} without a Location for ${what}`);
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        throw this.error(`redirected to an invalid location for ${what}`);
      }
      if (next.protocol !== 'https:' && !(next.protocol === 'http:' && this.transport.allowsPlainHttp(next.host))) {
        throw this.error(`redirected to ${next.origin}, which is neither HTTPS nor a loopback or insecure host`);
      }
      // Credentials are for the registry only: a storage backend or CDN gets a signed URL instead.
      const authorization = next.origin === this.base.origin ? this.auth.authorizationFor(this.reference.registry, this.reference.repository) : undefined;
      url = next;
      response = await this.transport.request(url, {
        headers: authorization ? { authorization } : {},
        signal,
        peer: `registry ${this.reference.registry} (redirected to ${url.host})`,
      });
    }
    await this.ensureOk(response, what);
    return this.guardBody(response, signal);
  }

  private url(path: string): URL {
    return new URL(`v2/${this.reference.repository}/${path}`, this.base);
  }

  private error(message: string): EngineError {
    return new EngineError('REGISTRY_ERROR', `registry ${this.reference.registry} ${message}`);
  }

  private async getManifest(
    reference: string,
    what: string,
    signal: AbortSignal,
  ): Promise<{ bytes: Buffer; contentType?: string; announcedDigest?: string }> {
    const response = await this.send(this.url(`manifests/${reference}`), MANIFEST_ACCEPT, signal);
    await this.ensureOk(response, what);
    let bytes: Buffer | undefined;
    try {
      bytes = await readBodyLimited(response.body, MAX_MANIFEST_BYTES);
    } catch (err) {
      throw this.transport.failure(err, { peer: this.origin, signal });
    }
    if (!bytes) throw this.error(`sent a manifest larger than ${MAX_MANIFEST_BYTES} bytes for ${what}`);
    const contentType = headerValue(response.headers, 'content-type');
    const announcedDigest = headerValue(response.headers, 'docker-content-digest');
    return {
      bytes,
      ...(contentType === undefined ? {} : { contentType }),
      ...(announcedDigest === undefined ? {} : { announcedDigest: announcedDigest.trim() }),
    };
  }

  /** One registry request, answering at most one authentication challenge. */
  private async send(url: URL, accept: string | undefined, signal: AbortSignal): Promise<HttpResponse> {
    const { registry, repository } = this.reference;
    let authorization = this.auth.authorizationFor(registry, repository);
    for (let answered = false; ; answered = true) {
      const headers: Record<string, string> = {};
      if (accept !== undefined) headers.accept = accept;
      if (authorization !== undefined) headers.authorization = authorization;
      const response = await this.transport.request(url, { headers, signal, peer: this.origin });
      // A second 401 means our fresh answer was refused: the caller reports it.
      if (response.statusCode !== 401 || answered) return response;
      const challenges = parseWwwAuthenticate(response.headers['www-authenticate']);
      await discardBody(response.body);
      if (authorization !== undefined) this.auth.forget(registry, repository);
      authorization = await this.auth.respond(challenges, registry, repository, signal);
    }
  }

  private async ensureOk(response: HttpResponse, what: string): Promise<void> {
    if (response.statusCode === 200) return;
    let body: Buffer | undefined;
    try {
      body = await readBodyLimited(response.body, MAX_ERROR_BODY);
    } catch {
      body = undefined; // the status alone still says enough
    }
    throw registryAnswerError(response.statusCode, body, {
      registry: this.reference.registry,
      repository: this.reference.repository,
      what,
    });
  }

  /** The body as a stream whose socket failures become REGISTRY_ERROR, released if not read to the end. */
  private async *guardBody(response: HttpResponse, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    const body = response.body;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) yield chunk;
    } catch (err) {
      throw this.transport.failure(err, { peer: this.origin, signal });
    } finally {
      if (!body.readableEnded) body.destroy();
    }
  }
}
