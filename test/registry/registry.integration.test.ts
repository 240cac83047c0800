/**
 * Pulls against a REAL registry (Debian's docker-registry, distribution 2.8) on loopback: images
 * pushed by skopeo in Docker v2s2 and OCI formats, and Wasm artifacts / indexes uploaded by hand.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { createImageFetcher, staticCredentials, type ClosableImageFetcher } from '../../src/registry/index.js';
import {
  EMPTY_CONFIG,
  getManifest,
  makeLayout,
  pushLayout,
  startRegistry,
  startTokenServer,
  uploadBlob,
  uploadManifest,
  type RunningRegistry,
  type TokenServer,
} from '../support/registry.js';
import { ADD_WAT, COMPONENT_BYTES, SUB_WAT, buildWasm, gzip, makeTar, sameBytes } from './fixtures.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

let registry: RunningRegistry;
let work: string;
let add: { path: string; bytes: Buffer };
let sub: { path: string; bytes: Buffer };
let fetcher: ClosableImageFetcher;

async function refusal(reference: string, using: ClosableImageFetcher = fetcher): Promise<EngineError> {
  try {
    await using.fetch(reference);
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    return err as EngineError;
  }
  throw new Error(`expected ${reference} to be refused`);
}

/** Uploads an OCI manifest with the given layers (and a config blob), returning its digest. */
async function uploadImage(
  repository: string,
  tag: string,
  layers: Array<{ bytes: Buffer; mediaType: string; annotations?: Record<string, string> }>,
  config: { bytes: Buffer; mediaType: string } = { bytes: Buffer.from('{}'), mediaType: EMPTY_CONFIG.mediaType },
): Promise<{ digest: string; size: number }> {
  const configDigest = await uploadBlob(registry.host, repository, config.bytes);
  const descriptors = [];
  for (const layer of layers) {
    const digest = await uploadBlob(registry.host, repository, layer.bytes);
    descriptors.push({ mediaType: layer.mediaType, digest, size: layer.bytes.length, ...(layer.annotations ? { annotations: layer.annotations } : {}) });
  }
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: config.mediaType, digest: configDigest, size: config.bytes.length },
      layers: descriptors,
    }),
  );
  return { digest: await uploadManifest(registry.host, repository, tag, manifest, OCI_MANIFEST), size: manifest.length };
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'wasm-engine-pull-'));
  [add, sub, registry] = await Promise.all([buildWasm('integration-add', ADD_WAT), buildWasm('integration-sub', SUB_WAT), startRegistry()]);
  await makeLayout(add.path, path.join(work, 'add'), 'v1');
  await makeLayout(sub.path, path.join(work, 'sub'), 'v1');
  await Promise.all([
    pushLayout(path.join(work, 'add'), 'v1', `${registry.host}/hello:v2s2`, 'v2s2'),
    pushLayout(path.join(work, 'add'), 'v1', `${registry.host}/hello:oci`, 'oci'),
    pushLayout(path.join(work, 'sub'), 'v1', `${registry.host}/hello:sub-v2s2`, 'v2s2'),
  ]);
  fetcher = createImageFetcher({ logger: silentLogger });
}, 120_000);

afterAll(async () => {
  await fetcher?.close();
  await registry?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('pull from a real registry', () => {
  it.each(['v2s2', 'oci'])('pulls an image pushed as %s by tag, recording the manifest digest', async (format) => {
    const stored = await getManifest(registry.host, 'hello', format);
    expect(stored.mediaType).toBe(format === 'oci' ? OCI_MANIFEST : DOCKER_V2);
    const fetched = await fetcher.fetch(`${registry.host}/hello:${format}`);
    expect(sameBytes(fetched.bytes, add.bytes)).toBe(true);
    expect(fetched.fileName).toBe('/integration-add.wasm');
    expect(fetched.manifestDigest).toBe(stored.digest);
  });

  it.each(['v2s2', 'oci'])('pulls an image pushed as %s by pinned digest (with and without a tag)', async (format) => {
    const { digest } = await getManifest(registry.host, 'hello', format);
    const byDigest = await fetcher.fetch(`${registry.host}/hello@${digest}`);
    expect(sameBytes(byDigest.bytes, add.bytes)).toBe(true);
    expect(byDigest.manifestDigest).toBe(digest);
    // The digest wins over the tag: a tag that moved elsewhere does not change what is pulled.
    const pinned = await fetcher.fetch(`${registry.host}/hello:sub-v2s2@${digest}`);
    expect(sameBytes(pinned.bytes, add.bytes)).toBe(true);
  });

  it('unknown tag, repository or digest → IMAGE_NOT_FOUND naming the image', async () => {
    const tag = await refusal(`${registry.host}/hello:nope`);
    expect(tag.code).toBe('IMAGE_NOT_FOUND');
    expect(tag.message).toContain(`${registry.host}/hello:nope not found on registry ${registry.host}`);
    expect(tag.message).toMatch(/MANIFEST_UNKNOWN/);
    expect((await refusal(`${registry.host}/no/such/repo:v1`)).code).toBe('IMAGE_NOT_FOUND');
    expect((await refusal(`${registry.host}/hello@sha256:${'0'.repeat(64)}`)).code).toBe('IMAGE_NOT_FOUND');
  });

  it('a malformed reference is INVALID_REQUEST before any request', async () => {
    expect((await refusal(`${registry.host}/Hello:v1`)).code).toBe('INVALID_REQUEST');
  });

  it('pulls a CNCF Wasm artifact (raw application/wasm layer, wasm config)', async () => {
    const config = { bytes: Buffer.from(JSON.stringify({ architecture: 'wasm', os: 'wasip1' })), mediaType: 'application/vnd.wasm.config.v0+json' };
    const image = await uploadImage('artifact', 'v1', [{ bytes: add.bytes, mediaType: 'application/wasm', annotations: { 'org.opencontainers.image.title': 'add.wasm' } }], config);
    const fetched = await fetcher.fetch(`${registry.host}/artifact:v1`);
    expect(sameBytes(fetched.bytes, add.bytes)).toBe(true);
    expect(fetched.fileName).toBe('add.wasm');
    expect(fetched.manifestDigest).toBe(image.digest);
  });

  it('pulls an oras-style image: a raw module under a tar media type', async () => {
    await uploadImage('oras', 'v1', [{ bytes: sub.bytes, mediaType: 'application/vnd.oci.image.layer.v1.tar' }]);
    expect(sameBytes((await fetcher.fetch(`${registry.host}/oras:v1`)).bytes, sub.bytes)).toBe(true);
  });

  it('picks the wasip1/wasm entry of an OCI index and records the index digest', async () => {
    const artifact = await uploadImage('multi', 'wasm-only', [{ bytes: add.bytes, mediaType: 'application/vnd.wasm.content.layer.v1+wasm' }]);
    const linux = await uploadImage('multi', 'linux-only', [{ bytes: gzip(makeTar([{ name: 'other.wasm', bytes: sub.bytes }])), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }]);
    const index = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        { mediaType: OCI_MANIFEST, ...linux, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: OCI_MANIFEST, ...artifact, platform: { os: 'wasip1', architecture: 'wasm' } },
      ],
    };
    const indexDigest = await uploadManifest(registry.host, 'multi', 'v1', index, OCI_INDEX);
    const fetched = await fetcher.fetch(`${registry.host}/multi:v1`);
    expect(sameBytes(fetched.bytes, add.bytes)).toBe(true);
    expect(fetched.manifestDigest).toBe(indexDigest);
    expect(sameBytes((await fetcher.fetch(`${registry.host}/multi@${indexDigest}`)).bytes, add.bytes)).toBe(true);
  });

  it('picks wasi/wasm from a Docker manifest list, skipping an attestation listed first', async () => {
    const wasm = await getManifest(registry.host, 'hello', 'v2s2');
    const other = await getManifest(registry.host, 'hello', 'sub-v2s2');
    const list = {
      schemaVersion: 2,
      mediaType: DOCKER_LIST,
      manifests: [
        { mediaType: DOCKER_V2, digest: other.digest, size: other.bytes.length, platform: { os: 'unknown', architecture: 'unknown' } },
        { mediaType: DOCKER_V2, digest: wasm.digest, size: wasm.bytes.length, platform: { os: 'wasi', architecture: 'wasm' } },
      ],
    };
    await uploadManifest(registry.host, 'hello', 'list', list, DOCKER_LIST);
    expect(sameBytes((await fetcher.fetch(`${registry.host}/hello:list`)).bytes, add.bytes)).toBe(true);
  });

  it('refuses an index without a wasm platform, listing what it offers', async () => {
    const a = await getManifest(registry.host, 'hello', 'v2s2');
    const b = await getManifest(registry.host, 'hello', 'sub-v2s2');
    const list = {
      schemaVersion: 2,
      mediaType: DOCKER_LIST,
      manifests: [
        { mediaType: DOCKER_V2, digest: a.digest, size: a.bytes.length, platform: { os: 'linux', architecture: 'amd64' } },
        { mediaType: DOCKER_V2, digest: b.digest, size: b.bytes.length, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      ],
    };
    await uploadManifest(registry.host, 'hello', 'linux-list', list, DOCKER_LIST);
    const error = await refusal(`${registry.host}/hello:linux-list`);
    expect(error.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(error.message).toMatch(/no wasi\/wasm platform entry; it offers linux\/amd64, linux\/arm64\/v8/);
  });

  it('refuses an image holding two modules, and one holding a component', async () => {
    await uploadImage('two', 'v1', [
      { bytes: gzip(makeTar([{ name: 'bin/fn.wasm', bytes: add.bytes }])), mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' },
      { bytes: sub.bytes, mediaType: 'application/wasm' },
    ]);
    const two = await refusal(`${registry.host}/two:v1`);
    expect(two.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(two.message).toMatch(/holds 2 \.wasm modules .*\/bin\/fn\.wasm/);

    await uploadImage('component', 'v1', [{ bytes: COMPONENT_BYTES, mediaType: 'application/vnd.bytecodealliance.wasm.component.layer.v0+wasm' }]);
    const component = await refusal(`${registry.host}/component:v1`);
    expect(component.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(component.message).toMatch(/components are not supported yet/);
  });

  it('refuses an image larger than the configured limit', async () => {
    const small = createImageFetcher({ logger: silentLogger, maxImageBytes: 100 });
    try {
      const error = await refusal(`${registry.host}/hello:oci`, small);
      expect(error.code).toBe('INVALID_FUNCTION_IMAGE');
      expect(error.message).toMatch(/larger than the limit of 100 bytes/);
    } finally {
      await small.close();
    }
  });

  it('nothing listening → REGISTRY_ERROR naming the registry', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    const error = await refusal(`127.0.0.1:${port}/hello:v1`);
    expect(error.code).toBe('REGISTRY_ERROR');
    expect(error.message).toContain(`registry 127.0.0.1:${port}`);
    expect(error.message).toMatch(/connection refused/);
  });
});

describe('pull from a registry requiring Basic auth (htpasswd)', () => {
  const creds = { user: 'alice', pass: 's3cret' };
  let secured: RunningRegistry;

  beforeAll(async () => {
    secured = await startRegistry({ htpasswd: creds });
    await pushLayout(path.join(work, 'add'), 'v1', `${secured.host}/private:v1`, 'oci', { creds });
  }, 60_000);

  afterAll(async () => {
    await secured?.stop();
  });

  it('without credentials → REGISTRY_AUTH_FAILED naming the registry', async () => {
    const error = await refusal(`${secured.host}/private:v1`);
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toContain(`registry ${secured.host} requires credentials`);
  });

  it('with wrong credentials → REGISTRY_AUTH_FAILED', async () => {
    const wrong = createImageFetcher({ logger: silentLogger, credentials: staticCredentials({ [secured.host]: { username: 'alice', password: 'nope' } }) });
    try {
      const error = await refusal(`${secured.host}/private:v1`, wrong);
      expect(error.code).toBe('REGISTRY_AUTH_FAILED');
      expect(error.message).toContain(`registry ${secured.host} refused access to repository private (HTTP 401`);
    } finally {
      await wrong.close();
    }
  });

  it('with credentials from the provider → pulls', async () => {
    const authed = createImageFetcher({ logger: silentLogger, credentials: staticCredentials({ [secured.host]: { username: creds.user, password: creds.pass } }) });
    try {
      const fetched = await authed.fetch(`${secured.host}/private:v1`);
      expect(sameBytes(fetched.bytes, add.bytes)).toBe(true);
      // Once answered, the credentials go up front: a second pull works the same.
      expect(sameBytes((await authed.fetch(`${secured.host}/private:v1`)).bytes, add.bytes)).toBe(true);
    } finally {
      await authed.close();
    }
  });
});

describe('pull from a registry using Bearer token auth (distribution token protocol)', () => {
  let tokens: TokenServer;
  let tokened: RunningRegistry;
  const users = { user: 'bob', pass: 'hunter2' };
  let privateTokens: TokenServer;
  let privateRegistry: RunningRegistry;

  beforeAll(async () => {
    [tokens, privateTokens] = await Promise.all([startTokenServer(), startTokenServer({ users })]);
    [tokened, privateRegistry] = await Promise.all([startRegistry({ token: tokens.auth }), startRegistry({ token: privateTokens.auth })]);
    await Promise.all([
      pushLayout(path.join(work, 'add'), 'v1', `${tokened.host}/team/fn:v1`, 'v2s2'),
      pushLayout(path.join(work, 'add'), 'v1', `${privateRegistry.host}/team/fn:v1`, 'oci', { creds: users }),
    ]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([tokened?.stop(), privateRegistry?.stop()]);
    await Promise.all([tokens?.stop(), privateTokens?.stop()]);
  });

  it('pulls anonymously with a token asked for the repository\'s pull scope', async () => {
    const before = tokens.requests.length;
    const fetched = await fetcher.fetch(`${tokened.host}/team/fn:v1`);
    expect(sameBytes(fetched.bytes, add.bytes)).toBe(true);
    const asked = tokens.requests.slice(before);
    expect(asked).toHaveLength(1); // one token serves the manifest and blob requests
    expect(asked[0]).toEqual({ service: 'wasm-engine-test', scopes: ['repository:team/fn:pull'], authorization: undefined });
  });

  it('a token service refusing anonymous access → REGISTRY_AUTH_FAILED', async () => {
    const error = await refusal(`${privateRegistry.host}/team/fn:v1`);
    expect(error.code).toBe('REGISTRY_AUTH_FAILED');
    expect(error.message).toMatch(new RegExp(`token service http://127.0.0.1:\\d+ of registry ${privateRegistry.host} refused an anonymous token`));
  });

  it('sends configured credentials to the token service and pulls', async () => {
    const authed = createImageFetcher({
      logger: silentLogger,
      credentials: staticCredentials({ [privateRegistry.host]: { username: users.user, password: users.pass } }),
    });
    try {
      expect(sameBytes((await authed.fetch(`${privateRegistry.host}/team/fn:v1`)).bytes, add.bytes)).toBe(true);
    } finally {
      await authed.close();
    }
  });
});
