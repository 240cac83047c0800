import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import {
  MalformedManifestError,
  parseManifest,
  selectPlatformManifest,
  type Descriptor,
  type ImageIndex,
} from '../../src/registry/manifest.js';

const D = (n: string): string => `sha256:${n.repeat(64).slice(0, 64)}`;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const DOCKER_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';

const bytes = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

const imageManifest = {
  schemaVersion: 2,
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D('c'), size: 10 },
  layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D('1'), size: 100 }],
};

describe('parseManifest', () => {
  it('reads an OCI manifest without a mediaType field from its Content-Type', () => {
    const manifest = parseManifest(bytes(imageManifest), `${OCI_MANIFEST}; charset=utf-8`);
    expect(manifest).toMatchObject({ kind: 'manifest', mediaType: OCI_MANIFEST });
    if (manifest.kind !== 'manifest') return;
    expect(manifest.layers).toEqual([{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D('1'), size: 100 }]);
  });

  it('reads a Docker v2 schema 2 manifest', () => {
    const manifest = parseManifest(bytes({ ...imageManifest, mediaType: DOCKER_V2 }), DOCKER_V2);
    expect(manifest).toMatchObject({ kind: 'manifest', mediaType: DOCKER_V2 });
  });

  it('infers the type from the shape when the server says application/json', () => {
    expect(parseManifest(bytes(imageManifest), 'application/json').kind).toBe('manifest');
    expect(parseManifest(bytes({ schemaVersion: 2, manifests: [] }), undefined).kind).toBe('index');
  });

  it('reads a Docker manifest list with platforms', () => {
    const list = {
      schemaVersion: 2,
      mediaType: DOCKER_LIST,
      manifests: [{ mediaType: DOCKER_V2, digest: D('2'), size: 5, platform: { os: 'wasi', architecture: 'wasm' } }],
    };
    const index = parseManifest(bytes(list), DOCKER_LIST);
    expect(index).toMatchObject({ kind: 'index', manifests: [{ platform: { os: 'wasi', architecture: 'wasm' } }] });
  });

  it.each([
    ['not JSON', Buffer.from('<html>nope</html>'), OCI_MANIFEST, /not JSON/],
    ['a JSON array', bytes([]), OCI_MANIFEST, /not a JSON object/],
    ['schema 1', bytes({ schemaVersion: 1, fsLayers: [] }), 'application/vnd.docker.distribution.manifest.v1+prettyjws', /schema 1/],
    ['a mediaType contradicting Content-Type', bytes({ ...imageManifest, mediaType: OCI_INDEX, manifests: [] }), OCI_MANIFEST, /does not match/],
    ['a layer without digest', bytes({ ...imageManifest, layers: [{ mediaType: 'x', size: 1 }] }), OCI_MANIFEST, /layers\[0\].*digest/],
    ['a layer with an md5 digest', bytes({ ...imageManifest, layers: [{ mediaType: 'x', size: 1, digest: 'md5:abc' }] }), OCI_MANIFEST, /unsupported digest/],
    ['a negative size', bytes({ ...imageManifest, layers: [{ mediaType: 'x', size: -1, digest: D('1') }] }), OCI_MANIFEST, /valid size/],
    ['no config', bytes({ schemaVersion: 2, layers: [] }), OCI_MANIFEST, /config is not an object/],
    ['an unknown type', bytes({ schemaVersion: 2, mediaType: 'application/x-other', layers: [] }), undefined, /not a manifest type/],
  ])('refuses %s', (_what, body, contentType, reason) => {
    expect(() => parseManifest(body, contentType)).toThrow(MalformedManifestError);
    expect(() => parseManifest(body, contentType)).toThrow(reason);
  });
});

function entry(os: string, architecture: string, n: string, extra: Partial<Descriptor> = {}): Descriptor {
  return { mediaType: OCI_MANIFEST, digest: D(n), size: 1, platform: { os, architecture }, ...extra };
}

function index(...manifests: Descriptor[]): ImageIndex {
  return { kind: 'index', mediaType: OCI_INDEX, manifests };
}

describe('selectPlatformManifest', () => {
  it('picks the wasi/wasm entry among others', () => {
    const chosen = selectPlatformManifest(
      index(entry('linux', 'amd64', '1'), entry('wasi', 'wasm', '2'), entry('unknown', 'unknown', '3')),
      'img',
    );
    expect(chosen.digest).toBe(D('2'));
  });

  it('accepts wasip1/wasm (the CNCF Wasm artifact platform)', () => {
    expect(selectPlatformManifest(index(entry('linux', 'arm64', '1'), entry('wasip1', 'wasm', '2')), 'img').digest).toBe(D('2'));
  });

  it('prefers wasi/wasm over wasip1/wasm', () => {
    expect(selectPlatformManifest(index(entry('wasip1', 'wasm', '1'), entry('wasi', 'wasm', '2')), 'img').digest).toBe(D('2'));
  });

  it('takes the only entry that is not an attestation', () => {
    const attestation = entry('unknown', 'unknown', '9', {
      annotations: { 'vnd.docker.reference.type': 'attestation-manifest' },
    });
    expect(selectPlatformManifest(index(attestation, entry('linux', 'amd64', '1')), 'img').digest).toBe(D('1'));
  });

  it('skips entries that are not manifests', () => {
    const other = { mediaType: 'application/vnd.example.sbom', digest: D('5'), size: 1 };
    expect(selectPlatformManifest(index(other, entry('linux', 'amd64', '1')), 'img').digest).toBe(D('1'));
  });

  it('refuses several non-wasm platforms, listing them', () => {
    const error = (() => {
      try {
        selectPlatformManifest(index(entry('linux', 'amd64', '1'), entry('linux', 'arm64', '2', { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } })), 'reg/img:v1');
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).code).toBe('INVALID_FUNCTION_IMAGE');
    expect((error as EngineError).message).toMatch(/reg\/img:v1 has no wasi\/wasm platform entry; it offers linux\/amd64, linux\/arm64\/v8/);
  });

  it('refuses an index holding only attestations', () => {
    expect(() => selectPlatformManifest(index(entry('unknown', 'unknown', '1')), 'img')).toThrow(/no image manifest/);
  });
});
