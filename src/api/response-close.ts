/**
 * One 'close' listener per response where two parts of the HTTP layer need to hear of it: the
 * pipeline gate (pipeline-gate.ts) listens on every response it starts, and the invocation route
 * (invoke-route.ts) needs to hear of the same close to drop a call whose client went away. A
 * second listener costs every answer an EventEmitter listener array; here the gate's listener runs
 * the route's hook after its own work, in the order the two listeners ran in.
 */
import type { ServerResponse } from 'node:http';

const HOOK = Symbol('close hook');
const LISTENED = Symbol('close listened');

type CloseHook = (this: ServerResponse) => void;

interface HookedResponse extends ServerResponse {
  [HOOK]?: CloseHook;
  [LISTENED]?: true;
}

/**
 * Adds `listener` as `res`'s 'close' listener, which then runs the hook whenClosed() gives it.
 * `listener` is shared by every response (no closure per response).
 */
export function listenClose(res: ServerResponse, listener: CloseHook): void {
  (res as HookedResponse)[LISTENED] = true;
  res.on('close', listener);
}

/** Runs `res`'s hook, if it has one: called last by the listener given to listenClose. */
export function runCloseHook(res: ServerResponse): void {
  const hook = (res as HookedResponse)[HOOK];
  if (hook !== undefined) hook.call(res);
}

/**
 * Has `hook` (shared by every response) run once `res` closes: through the listener listenClose
 * put on it when there is one and its hook is free, else as a listener of its own.
 */
export function whenClosed(res: ServerResponse, hook: CloseHook): void {
  const hooked = res as HookedResponse;
  if (hooked[LISTENED] === true && hooked[HOOK] === undefined) hooked[HOOK] = hook;
  else res.on('close', hook);
}
