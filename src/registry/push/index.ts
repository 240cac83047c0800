/** The push side: build an image from a module, push it to a registry, or write it as an OCI layout. */
import { EngineError } from '../../errors.js';
import { createConnection, type ConnectionOptions } from '../connection.js';
import { parseImageReference, type RegistryReference } from '../reference.js';
import type { TransferProgress } from '../types.js';
import type { BuiltImage } from './image-builder.js';
import { pushImage, type PushResult } from './pusher.js';

export { buildImage, checkPushableModule, imageFileName, IMAGE_FORMATS, type BuiltImage, type ImageFormat } from './image-builder.js';
export { writeOciLayout, type LayoutResult } from './layout-writer.js';
export type { PushResult } from './pusher.js';

export interface ImagePusherOptions extends ConnectionOptions {
  /** Time for a whole push (default 10 minutes: uploads can be large and links slow). */
  timeoutMs?: number;
  onProgress?: (event: TransferProgress) => void;
}

export const DEFAULT_PUSH_TIMEOUT_MS = 600_000;

export interface ImagePusher {
  push(image: BuiltImage, reference: string, options?: { signal?: AbortSignal }): Promise<PushResult>;
  close(): Promise<void>;
}

/** A registry reference a push can write: a tag, never a digest (the registry computes that). */
export function parsePushReference(reference: string): RegistryReference {
  const parsed = parseImageReference(reference);
  if (parsed.kind !== 'registry') {
    throw new EngineError('INVALID_REQUEST', `cannot push to ${reference}: give a registry reference like 127.0.0.1:5000/name:tag (use pack for an OCI layout)`);
  }
  if (parsed.digest !== undefined) {
    throw new EngineError('INVALID_REQUEST', `cannot push to ${reference}: a push names a tag; the digest is what the push answers`);
  }
  return parsed;
}

export function createImagePusher(options: ImagePusherOptions): ImagePusher {
  const connection = createConnection(options);
  const timeoutMs = options.timeoutMs ?? DEFAULT_PUSH_TIMEOUT_MS;
  return {
    async push(image, reference, pushOptions = {}) {
      const parsed = parsePushReference(reference);
      const deadline = AbortSignal.timeout(timeoutMs);
      const signal = pushOptions.signal ? AbortSignal.any([deadline, pushOptions.signal]) : deadline;
      try {
        return await pushImage(image, parsed, connection, {
          signal,
          logger: options.logger,
          ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        });
      } catch (err) {
        if (deadline.aborted) throw new EngineError('REGISTRY_ERROR', `pushing ${reference} took longer than ${timeoutMs} ms`, { cause: err });
        if (pushOptions.signal?.aborted) throw new EngineError('REGISTRY_ERROR', `pushing ${reference} was cancelled`, { cause: err });
        throw err;
      }
    },
    close: () => connection.transport.close(),
  };
}
