/**
 * Content digests (OCI image spec "Digests"): grammar, hashing and verification of bytes, whole or
 * streamed. Only sha256 and sha512 are registered algorithms; anything else cannot be verified and
 * is therefore refused.
 */
import { createHash, type Hash } from 'node:crypto';

const ALGORITHMS = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
} as const;

export type DigestAlgorithm = keyof typeof ALGORITHMS;

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
}

/** Parses `algorithm:hex`; undefined when the digest is malformed or its algorithm unsupported. */
export function parseDigest(digest: string): ParsedDigest | undefined {
  const colon = digest.indexOf(':');
  if (colon < 0) return undefined;
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') return undefined;
  return ALGORITHMS[algorithm].test(hex) ? { algorithm, hex } : undefined;
}

export function isSupportedDigest(digest: string): boolean {
  return parseDigest(digest) !== undefined;
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Digest of `bytes` with the algorithm `like` names (so a sha512 header can be checked too). */
export function digestLike(like: string, bytes: Uint8Array): string | undefined {
  const parsed = parseDigest(like);
  if (!parsed) return undefined;
  return `${parsed.algorithm}:${createHash(parsed.algorithm).update(bytes).digest('hex')}`;
}

/** Hashes a stream chunk by chunk and counts its bytes, for checking a blob against its descriptor. */
export class StreamVerifier {
  private readonly hash: Hash;
  private readonly algorithm: DigestAlgorithm;
  bytes = 0;

  constructor(readonly expected: string) {
    const parsed = parseDigest(expected);
    if (!parsed) throw new Error(`unsupported digest ${expected}`);
    this.algorithm = parsed.algorithm;
    this.hash = createHash(parsed.algorithm);
  }

  update(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    this.hash.update(chunk);
  }

  /** The digest of everything seen; call once, after the last chunk. */
  actual(): string {
    return `${this.algorithm}:${this.hash.digest('hex')}`;
  }
}

/** Short form of a digest for messages: `sha256:0123456789ab`. */
export function shortDigest(digest: string): string {
  const colon = digest.indexOf(':');
  return colon < 0 ? digest : digest.slice(0, colon + 13);
}
