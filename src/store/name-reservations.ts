/**
 * Names reserved by deploys in progress on this node, so that a second deploy of a name is refused
 * before it pulls anything. (The PostgreSQL store settles races between nodes in the database; this
 * only spares the pull on one node.)
 */
import { EngineError } from '../errors.js';

export class NameReservations {
  private readonly names = new Set<string>();

  /**
   * Reserves `name`, or throws FUNCTION_EXISTS when it is deployed or reserved. `beforeTaking`
   * runs once the name is known to be free (a store may refuse the deploy for its own reasons).
   * The returned release() may be called more than once.
   */
  reserve(name: string, deployed: boolean, beforeTaking?: () => void): () => void {
    if (deployed || this.names.has(name)) {
      throw new EngineError('FUNCTION_EXISTS', `function ${name} is already deployed`);
    }
    beforeTaking?.();
    this.names.add(name);
    let released = false;
    return () => {
      if (!released) this.names.delete(name);
      released = true;
    };
  }
}
