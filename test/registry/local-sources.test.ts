/** `oci:PATH[:tag]` layouts (as make-oci-layout.sh / umoci / skopeo write them) and `file:PATH` modules. */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { createImageFetcher, type ClosableImageFetcher } from '../../src/registry/index.js';
import { makeLayout } from '../support/registry.js';
import { ADD_WAT, COMPONENT_BYTES, SUB_WAT, buildWasm, sameBytes } from './fixtures.js';

const run = promisify(execFile);

let work: string;
let add: { path: string; bytes: Buffer };
let sub: { path: string; bytes: Buffer };
let layout: string;
let fetcher: ClosableImageFetcher;

async function refusal(reference: string): Promise<EngineError> {
  try {
    await fetcher.fetch(reference);
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    return err as EngineError;
  }
  throw new Error(`expected ${reference} to be refused`);
}

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'wasm-engine-local-'));
  [add, sub] = await Promise.all([buildWasm('local-add', ADD_WAT), buildWasm('local-sub', SUB_WAT)]);
  layout = path.join(work, 'layout');
  await makeLayout(add.path, layout, 'v1');
  fetcher = createImageFetcher({ logger: silentLogger });
}, 60_000);

afterAll(async () => {
  await fetcher?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

async function indexJson(dir: string): Promise<{ manifests: Array<{ digest: string; annotations?: Record<string, string> }> }> {
  return JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8'));
}

/** Digests of the layers of the (only) image in a layout. */
async function layerDigests(dir: string): Promise<string[]> {
  const manifestDigest = (await indexJson(dir)).manifests[0]?.digest.slice('sha256:'.length) ?? '';
  const manifest = JSON.parse(await readFile(path.join(dir, 'blobs', 'sha256', manifestDigest), 'utf8')) as { layers: Array<{ digest: string }> };
  return manifest.layers.map((l) => l.digest);
}

describe('oci: layouts', () => {
  it('pulls by tag, recording the manifest digest from index.json', async () => {
    const fetched = await fetcher.fetch(`oci:${layout}:v1`);
    expect(sameBytes(fetched.bytes, add.bytes)).toBe(true);
    expect(fetched.fileName).toBe('/local-add.wasm');
    expect(fetched.manifestDigest).toBe((await indexJson(layout)).manifests[0]?.digest);
  });

  it('without a tag takes the only image, and resolves a relative path against the cwd', async () => {
    const relative = path.relative(process.cwd(), layout);
    expect(path.isAbsolute(relative)).toBe(false);
    expect(sameBytes((await fetcher.fetch(`oci:${relative}`)).bytes, add.bytes)).toBe(true);
  });

  it('pulls by pinned digest', async () => {
    const digest = (await indexJson(layout)).manifests[0]?.digest ?? '';
    expect((await fetcher.fetch(`oci:${layout}@${digest}`)).manifestDigest).toBe(digest);
  });

  it('with several images: picks the tag, defaults to latest, and lists tags when it cannot choose', async () => {
    const multi = path.join(work, 'multi');
    await makeLayout(add.path, multi, 'v1');
    // A second image in the same layout: add a tag pointing to a fresh image of the other module.
    const other = path.join(work, 'other');
    await makeLayout(sub.path, other, 'v2');
    await run('skopeo', ['--insecure-policy', 'copy', '--quiet', `oci:${other}:v2`, `oci:${multi}:v2`]);

    expect(sameBytes((await fetcher.fetch(`oci:${multi}:v2`)).bytes, sub.bytes)).toBe(true);
    expect(sameBytes((await fetcher.fetch(`oci:${multi}:v1`)).bytes, add.bytes)).toBe(true);

    const noDefault = await refusal(`oci:${multi}`);
    expect(noDefault.code).toBe('IMAGE_NOT_FOUND');
    expect(noDefault.message).toMatch(/no image tagged latest \(tags: v1, v2\)/);

    await run('skopeo', ['--insecure-policy', 'copy', '--quiet', `oci:${other}:v2`, `oci:${multi}:latest`]);
    expect(sameBytes((await fetcher.fetch(`oci:${multi}`)).bytes, sub.bytes)).toBe(true);
  });

  it('a missing directory, layout or tag → IMAGE_NOT_FOUND', async () => {
    const missing = await refusal(`oci:${path.join(work, 'nope')}:v1`);
    expect(missing.code).toBe('IMAGE_NOT_FOUND');
    expect(missing.message).toMatch(/no such directory/);

    const plainDir = path.join(work, 'plain');
    await mkdir(plainDir, { recursive: true });
    expect((await refusal(`oci:${plainDir}`)).message).toMatch(/not an OCI image layout/);

    const tag = await refusal(`oci:${layout}:v9`);
    expect(tag.code).toBe('IMAGE_NOT_FOUND');
    expect(tag.message).toMatch(/no image tagged v9 \(tags: v1\)/);

    expect((await refusal(`oci:${layout}@sha256:${'1'.repeat(64)}`)).code).toBe('IMAGE_NOT_FOUND');
  });

  it('a layer blob that does not match its digest → INVALID_FUNCTION_IMAGE (a corrupt local image)', async () => {
    const corrupt = path.join(work, 'corrupt');
    await cp(layout, corrupt, { recursive: true });
    const blobs = path.join(corrupt, 'blobs', 'sha256');
    const layer = (await layerDigests(corrupt))[0]?.slice('sha256:'.length) ?? '';
    const bytes = await readFile(path.join(blobs, layer));
    bytes[bytes.length - 20] ^= 0xff;
    await writeFile(path.join(blobs, layer), bytes);
    const error = await refusal(`oci:${corrupt}:v1`);
    expect(error.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(error.message).toMatch(/does not match its digest/);
  });

  it('a missing blob → IMAGE_NOT_FOUND naming it', async () => {
    const broken = path.join(work, 'broken');
    await cp(layout, broken, { recursive: true });
    const [layer] = await layerDigests(broken);
    await rm(path.join(broken, 'blobs', 'sha256', layer?.slice('sha256:'.length) ?? ''));
    const error = await refusal(`oci:${broken}:v1`);
    expect(error.code).toBe('IMAGE_NOT_FOUND');
    expect(error.message).toContain(`blob ${layer} is missing`);
  });
});

describe('file: modules', () => {
  it('reads the module and names the file', async () => {
    const fetched = await fetcher.fetch(`file:${add.path}`);
    expect(sameBytes(fetched.bytes, add.bytes)).toBe(true);
    expect(fetched.fileName).toBe('local-add.wasm');
    expect(fetched.manifestDigest).toBeUndefined();
  });

  it('a missing file or a directory → IMAGE_NOT_FOUND', async () => {
    const missing = await refusal(`file:${path.join(work, 'nope.wasm')}`);
    expect(missing.code).toBe('IMAGE_NOT_FOUND');
    expect(missing.message).toContain(path.join(work, 'nope.wasm'));
    expect((await refusal(`file:${work}`)).code).toBe('IMAGE_NOT_FOUND');
  });

  it('a file that is not WebAssembly, or is a component → INVALID_FUNCTION_IMAGE', async () => {
    const text = path.join(work, 'text.wasm');
    await writeFile(text, 'not wasm');
    expect((await refusal(`file:${text}`)).code).toBe('INVALID_FUNCTION_IMAGE');
    const component = path.join(work, 'component.wasm');
    await writeFile(component, COMPONENT_BYTES);
    const error = await refusal(`file:${component}`);
    expect(error.code).toBe('INVALID_FUNCTION_IMAGE');
    expect(error.message).toMatch(/components are not supported yet/);
  });

  it('a file over the size limit is refused', async () => {
    const small = createImageFetcher({ logger: silentLogger, maxImageBytes: 10 });
    try {
      await expect(small.fetch(`file:${add.path}`)).rejects.toMatchObject({ code: 'INVALID_FUNCTION_IMAGE' });
    } finally {
      await small.close();
    }
  });
});
