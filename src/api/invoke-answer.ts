/**
 * The answer to one `POST /function/invoke` request, built once and written by either transport:
 * Node's ServerResponse (invoke-route.ts) or the connection reader (invoke-connection.ts), which
 * writes it byte for byte as Node would.
 */
import type { EngineError } from '../errors.js';
import { ERROR_STATUS } from './error-status.js';
import { JSON_TYPE, TEXT_TYPE, errorObject, errorText, textLine } from './reply.js';

export interface InvokeAnswer {
  status: number;
  /** Name, value, name, value…, in the order written; `connection: close` among them when `close`. */
  headers: string[];
  body: string;
  /**
   * A long output's body instead of `body`, in pieces made as they are written (the headers then
   * say `transfer-encoding: chunked`): see STREAM_OUTPUT_CHARS.
   */
  chunks?: Iterator<string>;
  /** The connection ends after this answer (a body that was not read or not parsed, as Fastify does). */
  close: boolean;
}

/** Writes an answer on its transport; false when it could not (the connection is gone). */
export type AnswerWriter = (answer: InvokeAnswer) => boolean;

/**
 * Outputs longer than this (in characters) are answered in pieces, each made when the one before
 * has gone out: building and writing a 16 MiB answer at once — up to 200 MB of JSON for NUL bytes,
 * which escape to six characters, twice (`message` and `output`) — held the HTTP thread for
 * seconds and its memory whatever the client read. Shorter ones keep the one-string answer.
 */
export const STREAM_OUTPUT_CHARS = 256 * 1024;
/** Characters of output escaped and written per piece. */
const SLICE_CHARS = 64 * 1024;

/** The answer for `err`, or for a success with `output`, in the JSON format or the text line. */
export function invokeAnswer(json: boolean, err: EngineError | undefined, output: string, close: boolean): InvokeAnswer {
  const headers: string[] = [];
  if (close) headers.push('connection', 'close');
  let status = 200;
  let body: string;
  if (err === undefined) {
    if (output.length > STREAM_OUTPUT_CHARS) {
      headers.push('content-type', json ? JSON_TYPE : TEXT_TYPE, 'transfer-encoding', 'chunked');
      return { status, headers, body: '', chunks: answerChunks(json, output), close };
    }
    body = json ? JSON.stringify({ status, message: output, output }) : textLine(status, output, true);
  } else {
    status = ERROR_STATUS[err.code];
    if (err.retryAfterSeconds !== undefined) headers.push('retry-after', String(err.retryAfterSeconds));
    body = json ? JSON.stringify(errorObject(err)) : textLine(status, errorText(err), true);
  }
  headers.push('content-type', json ? JSON_TYPE : TEXT_TYPE, 'content-length', String(Buffer.byteLength(body)));
  return { status, headers, body, close };
}

/** The body of a success answer in pieces: the same bytes as the one-string answer. */
export function* answerChunks(json: boolean, output: string): Generator<string, void, undefined> {
  if (!json) {
    yield textLine(200, '', true);
    yield* slices(output, false);
    return;
  }
  yield '{"status":200,"message":"';
  yield* slices(output, true);
  yield '","output":"';
  yield* slices(output, true);
  yield '"}';
}

/** `text` in slices that never split a surrogate pair, JSON-escaped (without quotes) when `escape`. */
function* slices(text: string, escape: boolean): Generator<string, void, undefined> {
  for (let at = 0; at < text.length; ) {
    let end = Math.min(text.length, at + SLICE_CHARS);
    if (end < text.length && (text.charCodeAt(end - 1) & 0xfc00) === 0xd800) end -= 1;
    const slice = text.slice(at, end);
    yield escape ? JSON.stringify(slice).slice(1, -1) : slice;
    at = end;
  }
}
