/**
 * How long a client may take to send a whole request, head and body, before its connection is
 * answered 408 REQUEST_TIMEOUT and closed (client-errors.ts): without it, a client that sends part
 * of a body and waits holds its connection, and what was read of the body, for as long as it likes.
 * Node checks its connections for this at an interval fixed when the server is made.
 */
/** Node's own interval, and the longest one used. */
const NODE_CHECK_MS = 30_000;

/** Checks a quarter of the timeout apart (at least 50 ms, at most Node's 30 s): a request is cut at most a quarter late. */
export function connectionsCheckingInterval(requestTimeoutMs: number): number {
  if (requestTimeoutMs <= 0) return NODE_CHECK_MS;
  return Math.min(NODE_CHECK_MS, Math.max(50, Math.floor(requestTimeoutMs / 4)));
}
