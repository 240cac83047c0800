/**
 * Parses a `function_image` into one of three sources: a registry reference
 * (`[host[:port]/]repository[:tag][@sha256:digest]`), an OCI image layout (`oci:PATH[:tag]`) or a
 * plain module file (`file:PATH`). Parsing never touches the network or the file system, so the
 * HTTP layer can refuse a bad reference with 400 before anything is fetched.
 */
import path from 'node:path';
import { EngineError } from '../errors.js';

export const DOCKER_HUB = 'docker.io';
export const DEFAULT_TAG = 'latest';

export interface RegistryReference {
  kind: 'registry';
  /** host[:port] as written (Docker Hub is `docker.io`); the name messages use. */
  registry: string;
  /** Repository path, e.g. `library/hello`. */
  repository: string;
  /** The tag; `latest` when neither a tag nor a digest was given; absent for a digest-only reference. */
  tag?: string;
  /** A pinned `sha256:<hex>` manifest digest; when present it wins over the tag. */
  digest?: string;
  /** Fully qualified form, for messages and logs. */
  canonical: string;
}

export interface OciLayoutReference {
  kind: 'oci';
  /** Absolute path of the layout directory. */
  dir: string;
  /** The tag (`org.opencontainers.image.ref.name`); absent means `latest`, or the only image. */
  tag?: string;
  /** A pinned manifest digest; when present it wins over the tag. */
  digest?: string;
  canonical: string;
}

export interface FileReference {
  kind: 'file';
  /** Absolute path of the .wasm file. */
  path: string;
  canonical: string;
}

export type ImageReference = RegistryReference | OciLayoutReference | FileReference;

// The distribution spec's grammar (distribution/reference): lower-case path components joined by
// `/`, each alphanumeric runs separated by `.`, `_`, `__` or any number of `-`.
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const REPOSITORY_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const SHA256_RE = /^sha256:[a-f0-9]{64}$/;
const DOMAIN_COMPONENT = '(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])';
const HOST_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9A-Fa-f:.]+\\])(?::([0-9]+))?$`);
/** Distribution's limit on the length of a full name (host and repository). */
const MAX_NAME_LENGTH = 255;

function invalid(reference: string, reason: string): EngineError {
  return new EngineError('INVALID_REQUEST', `invalid image reference ${JSON.stringify(reference)}: ${reason}`);
}

function checkTag(reference: string, tag: string): void {
  if (!TAG_RE.test(tag)) {
    throw invalid(
      reference,
      `tag ${JSON.stringify(tag)} must be 1-128 characters of [A-Za-z0-9_.-] not starting with . or -`,
    );
  }
}

function checkDigest(reference: string, digest: string): void {
  if (SHA256_RE.test(digest)) return;
  if (!digest.startsWith('sha256:')) {
    throw invalid(reference, `digest ${JSON.stringify(digest)} is not supported: only sha256: digests are`);
  }
  throw invalid(reference, `digest ${JSON.stringify(digest)} must be sha256: followed by 64 lower-case hex digits`);
}

/** Splits a trailing `@digest` off, validating it. */
function splitDigest(reference: string, text: string): { rest: string; digest?: string } {
  const at = text.lastIndexOf('@');
  if (at < 0) return { rest: text };
  const digest = text.slice(at + 1);
  checkDigest(reference, digest);
  return { rest: text.slice(0, at), digest };
}

/** Splits `name:tag`, where the tag is what follows the last `:` only if it holds no `/`. */
function splitTag(text: string): { name: string; tag?: string } {
  const colon = text.lastIndexOf(':');
  if (colon < 0 || text.indexOf('/', colon) >= 0) return { name: text };
  return { name: text.slice(0, colon), tag: text.slice(colon + 1) };
}

function parseRegistryReference(reference: string): RegistryReference {
  const { rest, digest } = splitDigest(reference, reference);
  const { name, tag: explicitTag } = splitTag(rest);
  if (explicitTag !== undefined) checkTag(reference, explicitTag);
  if (name === '') throw invalid(reference, 'the repository name is empty');

  // The first segment is a registry host only if it looks like one (REGISTRY-FACTS: holds `.` or
  // `:`, or is `localhost`); `library/hello` and `hello` are Docker Hub names.
  const slash = name.indexOf('/');
  const first = slash < 0 ? '' : name.slice(0, slash);
  const hasHost = slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost');
  let registry = hasHost ? first : DOCKER_HUB;
  let repository = hasHost ? name.slice(slash + 1) : name;

  if (hasHost) {
    const match = HOST_RE.exec(registry);
    if (!match) throw invalid(reference, `${JSON.stringify(registry)} is not a valid registry host[:port]`);
    const port = match[1];
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
      throw invalid(reference, `port ${port} is out of range`);
    }
    // Docker's own alias for Hub: one canonical name keeps messages and credentials consistent.
    if (registry === 'index.docker.io') registry = DOCKER_HUB;
  }
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;

  if (!REPOSITORY_RE.test(repository)) {
    const reason =
      repository !== repository.toLowerCase()
        ? `repository ${JSON.stringify(repository)} must be lower-case`
        : `repository ${JSON.stringify(repository)} must be /-separated components of [a-z0-9] joined by . _ __ or -`;
    throw invalid(reference, reason);
  }
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) {
    throw invalid(reference, `the name is longer than ${MAX_NAME_LENGTH} characters`);
  }

  const tag = explicitTag ?? (digest === undefined ? DEFAULT_TAG : undefined);
  const canonical =
    `${registry}/${repository}` + (tag === undefined ? '' : `:${tag}`) + (digest === undefined ? '' : `@${digest}`);
  return {
    kind: 'registry',
    registry,
    repository,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
    canonical,
  };
}

function parseOciReference(reference: string, body: string): OciLayoutReference {
  // Only a suffix naming a sha algorithm is a digest: `@` may well appear inside a directory name.
  const digestMatch = /@(sha[0-9]+:[^/@]*)$/.exec(body);
  let digest: string | undefined;
  let rest = body;
  if (digestMatch?.[1] !== undefined) {
    digest = digestMatch[1];
    checkDigest(reference, digest);
    rest = body.slice(0, digestMatch.index);
  }
  const { name, tag } = splitTag(rest);
  if (tag !== undefined) checkTag(reference, tag);
  if (name === '') throw invalid(reference, 'the OCI layout path is empty');
  const dir = path.resolve(name);
  return {
    kind: 'oci',
    dir,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
    canonical: `oci:${dir}` + (tag === undefined ? '' : `:${tag}`) + (digest === undefined ? '' : `@${digest}`),
  };
}

function parseFileReference(reference: string, body: string): FileReference {
  if (body === '') throw invalid(reference, 'the file path is empty');
  const file = path.resolve(body);
  return { kind: 'file', path: file, canonical: `file:${file}` };
}

/**
 * Parses an image reference. Relative `oci:`/`file:` paths resolve against the process's current
 * directory. Throws INVALID_REQUEST naming the reference and what is wrong with it.
 */
export function parseImageReference(reference: string): ImageReference {
  if (typeof reference !== 'string' || reference === '') {
    throw new EngineError('INVALID_REQUEST', 'invalid image reference: it is empty');
  }
  // Whitespace and control characters are never part of a name, tag or path a user meant.
  if (/[\s\u0000-\u001f\u007f]/.test(reference)) {
    throw invalid(reference, 'it contains whitespace or control characters');
  }
  if (reference.startsWith('oci:')) return parseOciReference(reference, reference.slice('oci:'.length));
  if (reference.startsWith('file:')) return parseFileReference(reference, reference.slice('file:'.length));
  return parseRegistryReference(reference);
}

/** Validates a reference up front (no fetching); throws INVALID_REQUEST when it is malformed. */
export function checkImageReference(reference: string): void {
  parseImageReference(reference);
}
