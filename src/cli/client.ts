/** A small client of the engine's HTTP API, asking for JSON answers. */
import { request } from 'undici';

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

export class EngineUnreachable extends Error {}

export async function callEngine(baseUrl: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<ApiAnswer> {
  let url: URL;
  try {
    url = new URL(path, baseUrl);
  } catch {
    throw new EngineUnreachable(`invalid --url ${baseUrl}`);
  }
  try {
    const answer = await request(url, {
      method,
      headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await answer.body.text();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { message: text };
    }
    return { status: answer.statusCode, body: (parsed ?? {}) as Record<string, unknown> };
  } catch (err) {
    throw new EngineUnreachable(`cannot reach the engine at ${baseUrl}: ${(err as Error).message}`);
  }
}
