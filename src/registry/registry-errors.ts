/**
 * Turns a registry's non-success answer into the engine's error codes. Registry bodies are often
 * but not always the distribution spec's `{"errors": [{code, message, detail}]}` (a plain-text
 * `404 page not found` is common, and `detail` may be anything), so nothing here trusts the shape.
 */
import { EngineError } from '../errors.js';

export interface ErrorBodySummary {
  /** Distribution error codes found, e.g. `MANIFEST_UNKNOWN`. */
  codes: string[];
  /** A short, printable description for messages ('' when the body says nothing useful). */
  text: string;
}

const NOT_FOUND_CODES: ReadonlySet<string> = new Set(['MANIFEST_UNKNOWN', 'NAME_UNKNOWN', 'BLOB_UNKNOWN']);
const MAX_TEXT = 200;

function printable(text: string): string {
  const flat = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return flat.length > MAX_TEXT ? `${flat.slice(0, MAX_TEXT)}…` : flat;
}

export function summarizeErrorBody(body: Buffer | undefined): ErrorBodySummary {
  if (!body || body.length === 0) return { codes: [], text: '' };
  const raw = body.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { codes: [], text: printable(raw) };
  }
  const errors = typeof json === 'object' && json !== null ? (json as { errors?: unknown }).errors : undefined;
  if (!Array.isArray(errors)) return { codes: [], text: printable(raw) };
  const codes: string[] = [];
  const parts: string[] = [];
  for (const item of errors) {
    if (typeof item !== 'object' || item === null) continue;
    const { code, message } = item as { code?: unknown; message?: unknown };
    const codeText = typeof code === 'string' ? code : undefined;
    const messageText = typeof message === 'string' ? message : undefined;
    if (codeText) codes.push(codeText.toUpperCase());
    const part = [codeText, messageText].filter(Boolean).join(' ');
    if (part) parts.push(part);
  }
  return { codes, text: printable(parts.join('; ')) };
}

export interface AnswerContext {
  registry: string;
  repository: string;
  /** The thing asked for, e.g. `image 127.0.0.1:5000/hello:v1`. */
  what: string;
  /** What was sent, e.g. `no credentials` or `user "alice" from Docker config /x` (never a secret). */
  credential?: string;
  /** Where credentials were looked for, said when none were sent. */
  sources?: string;
}

/** The error for a registry answer other than success. */
export function registryAnswerError(status: number, body: Buffer | undefined, context: AnswerContext): EngineError {
  const { codes, text } = summarizeErrorBody(body);
  const detail = `HTTP ${status}${text ? `: ${text}` : ''}`;
  const { registry, repository, what, credential } = context;
  if (status === 404 || codes.some((c) => NOT_FOUND_CODES.has(c))) {
    return new EngineError('IMAGE_NOT_FOUND', `${what} not found on registry ${registry} (${detail})`);
  }
  if (status === 401 || status === 403 || codes.includes('UNAUTHORIZED') || codes.includes('DENIED')) {
    const anonymous = credential === undefined || credential === 'no credentials' || credential === 'an anonymous token';
    const tried = credential === undefined ? '' : ` with ${credential}`;
    const hint = anonymous
      ? `; it may not exist, or it needs credentials${context.sources ? ` (none found in: ${context.sources})` : ''}`
      : '; check the credentials and their access to this repository';
    return new EngineError('REGISTRY_AUTH_FAILED', `registry ${registry} refused access to repository ${repository} (${detail})${tried}${hint}`);
  }
  if (status === 429 || codes.includes('TOOMANYREQUESTS')) {
    return new EngineError('REGISTRY_ERROR', `registry ${registry} is rate-limiting requests (${detail})`);
  }
  return new EngineError('REGISTRY_ERROR', `registry ${registry} answered ${detail} for ${what}`);
}
