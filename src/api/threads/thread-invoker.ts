/**
 * What `POST /function/invoke` runs on an HTTP thread (invoke-route.ts's `engine`): the call right
 * here, inline, when this thread's copy of the function table has the function, its module may
 * run inline, its gate has a free slot and its args are well formed; otherwise the main thread's
 * Engine runs it (forwarded over the worker's port) and whatever it answers is answered. A call
 * that runs here costs no message: the gate is a compare-and-swap on the engine's shared cells,
 * the table is read from memory (and brought up to date first, synchronously, when the shared
 * epoch says a change was posted; an idle thread applies changes as they arrive), and what is
 * reported of it is batched (reports.ts). Its answer is given at once, not as a promise: the route
 * writes it in the same turn.
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { releaseGateCell, tryTakeGateCell } from '../../core/function-gate.js';
import { stderrOf, type InvokeRequest } from '../../core/engine.js';
import type { InvocableFunction } from '../../core/function-table.js';
import { EngineError } from '../../errors.js';
import { normalizeArgs, toSandboxCall, type InvocationResult, type SandboxCall } from '../../runtime/index.js';
import { InlineExecutor, type InlineModule } from '../../runtime/inline/inline-executor.js';
import { CONTROL_CLOSING, CONTROL_EPOCH, type TableMessage, type ToMain, type ToThread } from './protocol.js';
import type { Reports } from './reports.js';

const DECLINED = Symbol('declined inline');

interface Entry {
  fn: InvocableFunction;
  loaded: InlineModule;
  key: string;
}

interface Pending {
  resolve: (result: InvocationResult) => void;
  reject: (err: EngineError) => void;
}

export interface ThreadInvokerOptions {
  control: Int32Array;
  tablePort: MessagePort;
  functions: InvocableFunction[];
  epoch: number;
  executor: InlineExecutor;
  reports: Reports;
  post: (message: ToMain) => void;
}

export class ThreadInvoker {
  private readonly table = new Map<string, Entry>();
  /** One InlineModule per module and memory limit, shared by the functions that use it. */
  private readonly modules = new Map<string, { loaded: InlineModule; users: number }>();
  private nextModuleId = 1;
  private applied: number;
  private readonly pending = new Map<number, Pending>();
  private nextCallId = 1;

  constructor(private readonly options: ThreadInvokerOptions) {
    this.applied = options.epoch;
    for (const fn of options.functions) this.apply({ name: fn.name, fn });
    // Changes are applied as they arrive too, so that an idle thread lets go of a deleted or
    // replaced module and its instances at once. Each change is read once, from the one queue,
    // whichever way (here, or catchUp before a call): in order, and `applied` counts them all.
    options.tablePort.on('message', (message: TableMessage) => {
      this.apply(message);
      this.applied += 1;
    });
    // The thread ends when its server does (close), whatever this port still holds.
    options.tablePort.unref();
  }

  /** The answer at once when the call ran here and succeeded; else a promise of it. */
  invoke(request: InvokeRequest): InvocationResult | Promise<InvocationResult> {
    const { control } = this.options;
    if (Atomics.load(control, CONTROL_CLOSING) === 0) {
      if (Atomics.load(control, CONTROL_EPOCH) !== this.applied) this.catchUp();
      const entry = this.table.get(request.name);
      if (entry !== undefined) {
        const ran = this.runHere(entry, request.args);
        if (ran !== undefined && ran !== DECLINED) return ran;
        // Abandoned at the budget, or skipped as the executor's rules say: the main thread's own
        // executor would only do the same, so its workers run it.
        if (ran === DECLINED) return this.forward(request, true);
      }
    }
    return this.forward(request, false);
  }

  /** Calls forwarded and not answered yet. */
  get forwarded(): number {
    return this.pending.size;
  }

  /** The main thread's answer to a forwarded call. */
  settle(message: Extract<ToThread, { type: 'result' | 'failure' }>): void {
    const pending = this.pending.get(message.id);
    if (pending === undefined) return;
    this.pending.delete(message.id);
    if (message.type === 'result') pending.resolve({ output: message.output, stderr: '', durationMs: 0 });
    else {
      const options = message.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: message.retryAfterSeconds };
      pending.reject(new EngineError(message.code, message.message, options));
    }
  }

  dispose(): void {
    this.options.tablePort.close();
    this.options.executor.dispose();
  }

  /** Applies every table change posted so far. */
  private catchUp(): void {
    const { control, tablePort } = this.options;
    while (this.applied !== Atomics.load(control, CONTROL_EPOCH)) {
      const received = receiveMessageOnPort(tablePort);
      // Posted before the epoch moved, so always there; never spin if it were not.
      if (received === undefined) return;
      this.apply(received.message as TableMessage);
      this.applied += 1;
    }
  }

  private apply({ name, fn }: TableMessage): void {
    const old = this.table.get(name);
    if (old !== undefined) {
      this.table.delete(name);
      this.release(old.key);
    }
    if (fn === undefined) return;
    const key = `${fn.digest}|${fn.memoryLimitMb}`;
    let held = this.modules.get(key);
    if (held === undefined) {
      const { module, state, noReuse } = fn.module;
      held = { loaded: { id: this.nextModuleId++, module, state, noReuse }, users: 0 };
      this.modules.set(key, held);
    }
    held.users += 1;
    this.table.set(name, { fn, loaded: held.loaded, key });
  }

  private release(key: string): void {
    const held = this.modules.get(key);
    if (held === undefined || --held.users > 0) return;
    this.modules.delete(key);
    held.loaded.unloaded = true;
    this.options.executor.dropUnloaded();
  }

  /**
   * The call's outcome when it ran here; DECLINED when the executor tried it or skipped it (the
   * workers' to run); undefined when it is the main thread's to run as any call.
   */
  private runHere(entry: Entry, rawArgs: unknown): InvocationResult | Promise<InvocationResult> | typeof DECLINED | undefined {
    const { fn } = entry;
    let call: SandboxCall;
    try {
      call = toSandboxCall({ analysis: fn.analysis, args: normalizeArgs(rawArgs), limits: fn.limits, env: fn.env });
    } catch {
      // The engine answers (and counts) what is wrong with them.
      return undefined;
    }
    if (!tryTakeGateCell(fn.gate)) return undefined;
    const started = performance.now();
    let ran: InvocationResult | EngineError | undefined;
    try {
      ran = this.options.executor.run(entry.loaded, call, fn.limits.timeoutMs);
    } finally {
      if (releaseGateCell(fn.gate)) this.options.post({ type: 'wake', name: fn.name });
    }
    if (ran === undefined) return DECLINED;
    const seconds = (performance.now() - started) / 1000;
    if (ran instanceof EngineError) {
      this.options.reports.invocation(fn.name, fn.digest, ran.code, seconds, stderrOf(ran));
      return Promise.reject(ran);
    }
    this.options.reports.invocation(fn.name, fn.digest, 'success', seconds, ran.stderr);
    return ran;
  }

  private forward(request: InvokeRequest, inlineTried: boolean): Promise<InvocationResult> {
    const id = this.nextCallId++;
    const signal = request.signal;
    return new Promise<InvocationResult>((resolve, reject) => {
      if (signal === undefined) {
        this.pending.set(id, { resolve, reject });
      } else {
        const onAbort = (): void => this.options.post({ type: 'cancel', id });
        signal.addEventListener('abort', onAbort, { once: true });
        const done = (): void => signal.removeEventListener('abort', onAbort);
        this.pending.set(id, {
          resolve: (result) => {
            done();
            resolve(result);
          },
          reject: (err) => {
            done();
            reject(err);
          },
        });
      }
      this.options.post({ type: 'invoke', id, name: request.name, args: request.args, inlineTried });
    });
  }
}
