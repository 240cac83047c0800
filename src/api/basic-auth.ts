/**
 * The one check of a request's Basic credentials: the main thread's Fastify hook (platform.ts)
 * and the HTTP threads (for invocations, when Basic auth guards them) ask the same function.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { BasicCredentials } from '../config/credentials.js';

/**
 * Whether an Authorization header carries `credentials`. Digests of fixed length are compared in
 * constant time: neither the password nor its length leaks.
 */
export function basicAuthChecker(credentials: BasicCredentials): (authorization: string | undefined) => boolean {
  const digest = (text: string): Buffer => createHash('sha256').update(text).digest();
  const expected = digest(`${credentials.user}:${credentials.password}`);
  return (header) => {
    if (header === undefined || !/^basic /i.test(header)) return false;
    const given = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    return timingSafeEqual(digest(given), expected);
  };
}
