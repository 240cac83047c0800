import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { checkImageReference, parseImageReference } from '../../src/registry/index.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

function expectInvalid(reference: string, reason: RegExp): void {
  let caught: unknown;
  try {
    checkImageReference(reference);
  } catch (err) {
    caught = err;
  }
  expect(caught, `${reference} should be refused`).toBeInstanceOf(EngineError);
  const error = caught as EngineError;
  expect(error.code).toBe('INVALID_REQUEST');
  if (reference !== '') expect(error.message).toContain(JSON.stringify(reference));
  expect(error.message).toMatch(reason);
}

describe('registry references', () => {
  it.each([
    ['hello', 'docker.io', 'library/hello', 'latest', undefined],
    ['hello:v1', 'docker.io', 'library/hello', 'v1', undefined],
    ['user/app:1.0', 'docker.io', 'user/app', '1.0', undefined],
    ['docker.io/hello', 'docker.io', 'library/hello', 'latest', undefined],
    ['index.docker.io/library/hello', 'docker.io', 'library/hello', 'latest', undefined],
    ['localhost/hello', 'localhost', 'hello', 'latest', undefined],
    ['localhost:5000/hello:v1', 'localhost:5000', 'hello', 'v1', undefined],
    ['127.0.0.1:5000/a/b/c:tag_1', '127.0.0.1:5000', 'a/b/c', 'tag_1', undefined],
    ['[::1]:5000/hello', '[::1]:5000', 'hello', 'latest', undefined],
    ['ghcr.io/org/fn@' + DIGEST, 'ghcr.io', 'org/fn', undefined, DIGEST],
    ['ghcr.io/org/fn:v2@' + DIGEST, 'ghcr.io', 'org/fn', 'v2', DIGEST],
    ['registry.example.com/a__b/c-d.e_f/g---h', 'registry.example.com', 'a__b/c-d.e_f/g---h', 'latest', undefined],
    ['Example.COM/x', 'Example.COM', 'x', 'latest', undefined],
  ])('%s → %s / %s', (reference, registry, repository, tag, digest) => {
    const parsed = parseImageReference(reference);
    expect(parsed.kind).toBe('registry');
    if (parsed.kind !== 'registry') return;
    expect(parsed.registry).toBe(registry);
    expect(parsed.repository).toBe(repository);
    expect(parsed.tag).toBe(tag);
    expect(parsed.digest).toBe(digest);
  });

  it('treats a first segment without . or : (and not localhost) as part of a Docker Hub name', () => {
    const parsed = parseImageReference('myorg/tools/fn');
    expect(parsed).toMatchObject({ registry: 'docker.io', repository: 'myorg/tools/fn' });
  });

  it('gives a canonical form for messages', () => {
    expect(parseImageReference('hello').canonical).toBe('docker.io/library/hello:latest');
    expect(parseImageReference(`127.0.0.1:5000/x@${DIGEST}`).canonical).toBe(`127.0.0.1:5000/x@${DIGEST}`);
  });

  it.each([
    ['', /empty/],
    ['Hello', /must be lower-case/],
    ['127.0.0.1:5000/MyApp:v1', /must be lower-case/],
    ['hello:', /tag "" must be/],
    ['hello:-v1', /tag "-v1" must be/],
    ['hello:' + 'x'.repeat(129), /tag .* must be 1-128/],
    ['hello@sha256:abc', /64 lower-case hex/],
    [`hello@sha256:${'A'.repeat(64)}`, /64 lower-case hex/],
    [`hello@md5:${'a'.repeat(32)}`, /only sha256/],
    ['a//b', /repository/],
    ['hello/', /repository/],
    ['_hello', /repository/],
    ['hello-/x', /repository/],
    ['hello world', /whitespace/],
    ['hello\n', /whitespace/],
    ['localhost:99999/x', /port 99999 is out of range/],
    ['bad_host.com:5000/x', /not a valid registry host/],
    ['host.com/' + 'a'.repeat(250), /longer than 255/],
    ['oci:', /OCI layout path is empty/],
    ['oci:/tmp/layout:bad!tag', /tag "bad!tag" must be/],
    ['oci:/tmp/layout@sha256:123', /64 lower-case hex/],
    ['file:', /file path is empty/],
  ])('refuses %j', (reference, reason) => expectInvalid(reference, reason));
});

describe('local references', () => {
  it('oci:PATH resolves a relative path against the current directory, without a tag', () => {
    const parsed = parseImageReference('oci:some/layout');
    expect(parsed).toEqual({ kind: 'oci', dir: path.resolve('some/layout'), canonical: `oci:${path.resolve('some/layout')}` });
  });

  it('oci:PATH:tag takes the tag after the last colon', () => {
    expect(parseImageReference('oci:/tmp/layout:v1')).toMatchObject({ kind: 'oci', dir: '/tmp/layout', tag: 'v1' });
    expect(parseImageReference('oci:/tmp/a:b:v1')).toMatchObject({ dir: '/tmp/a:b', tag: 'v1' });
  });

  it('oci: a colon followed by a slash belongs to the path', () => {
    const parsed = parseImageReference('oci:/tmp/a:b/layout');
    expect(parsed).toMatchObject({ kind: 'oci', dir: '/tmp/a:b/layout' });
    expect(parsed).not.toHaveProperty('tag');
  });

  it('oci: accepts a pinned digest', () => {
    expect(parseImageReference(`oci:/tmp/layout@${DIGEST}`)).toMatchObject({ dir: '/tmp/layout', digest: DIGEST });
    expect(parseImageReference(`oci:/tmp/lay@out:v1`)).toMatchObject({ dir: '/tmp/lay@out', tag: 'v1' });
  });

  it('file:PATH resolves against the current directory', () => {
    expect(parseImageReference('file:fn.wasm')).toEqual({
      kind: 'file',
      path: path.resolve('fn.wasm'),
      canonical: `file:${path.resolve('fn.wasm')}`,
    });
    expect(parseImageReference('file:///tmp/fn.wasm')).toMatchObject({ path: '/tmp/fn.wasm' });
  });
});
