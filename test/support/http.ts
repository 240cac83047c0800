/**
 * Requests shaped like the README's curl lines: a JSON body sent with the two Content-Type headers
 * the historical walk-through uses, the text answer by default, JSON when asked.
 */
import { request } from 'undici';

export interface Answer {
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed body when it is JSON. */
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- test assertions read arbitrary fields
}

export interface CallOptions {
  json?: boolean;
  /** Raw body text instead of JSON.stringify(body). */
  raw?: string;
  headers?: string[];
}

export async function call(base: string, method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<Answer> {
  const headers = options.headers ?? [
    'content-type', 'application/json',
    'content-type', 'text/plain',
    ...(options.json ? ['accept', 'application/json'] : []),
  ];
  const payload = options.raw ?? (body === undefined ? undefined : JSON.stringify(body));
  const answer = await request(`${base}${path}`, {
    method: method as 'GET',
    headers,
    ...(payload === undefined ? {} : { body: payload }),
  });
  const text = await answer.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: answer.statusCode, text, headers: answer.headers, json };
}
