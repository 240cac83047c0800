/**
 * Which image references a deploy may name. `file:` and `oci:` read paths on the engine's own host:
 * fine for local development, but on an engine reachable from other machines they would let any
 * client read the host's files into a function, so there they are refused unless allowed.
 */
import type { LocalImagesSetting } from '../config/settings.js';
import { EngineError } from '../errors.js';
import { checkImageReference, isLoopbackHost, parseImageReference } from '../registry/index.js';

/** `auto`: local sources are allowed exactly when the engine listens on a loopback address. */
export function localImagesAllowed(setting: LocalImagesSetting, host: string): boolean {
  return setting === 'allow' || (setting === 'auto' && isLoopbackHost(host));
}

export function imageReferenceCheck(allowLocal: boolean): (reference: string) => void {
  return (reference) => {
    checkImageReference(reference);
    if (allowLocal) return;
    const kind = parseImageReference(reference).kind;
    if (kind === 'file' || kind === 'oci') {
      throw new EngineError(
        'INVALID_REQUEST',
        `image ${reference}: ${kind}: sources read the engine's host files and are disabled on this engine (see --local-images)`,
      );
    }
  };
}
