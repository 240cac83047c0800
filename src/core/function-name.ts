import { EngineError } from '../errors.js';

/** The route words of SPEC §2: a function of one of these names would shadow a route. */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(['deploy', 'delete', 'list', 'query', 'invoke']);

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function checkFunctionName(name: string): void {
  if (!NAME.test(name)) {
    throw new EngineError(
      'INVALID_REQUEST',
      `invalid function_name ${JSON.stringify(name)}: use 1-63 characters of [A-Za-z0-9_.-], starting with a letter or digit`,
    );
  }
  if (RESERVED_NAMES.has(name)) {
    throw new EngineError('INVALID_REQUEST', `invalid function_name ${JSON.stringify(name)}: it is a reserved route word`);
  }
}
