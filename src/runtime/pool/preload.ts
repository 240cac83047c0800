/**
 * Preloading: compiled modules handed to every worker ahead of their first call, each worker
 * readying an instance for the module's ABI, one module at a time. A worker gets no call while it
 * preloads. Readying an instance runs the module's start function, so each module has a deadline
 * there, its time limit. A worker past it, or one that dies in it (its heap exhausted, say), is
 * replaced, and the replacement goes on with the modules after it; the module is set aside:
 * reported in the result, and its invocations answer FUNCTION_FAILED until it is loaded again.
 */
import type { Logger } from '../../logger.js';
import type { PreloadFailure } from '../types.js';
import type { LoadedModule } from './module-cache.js';
import type { ModuleTransfer } from './protocol.js';
import type { PreloadItem, PreloadRun, Slot, SlotPreload } from './pool-records.js';
import { MAX_TIMER_MS, post } from './worker-slot.js';

/** What the preloader needs of the pool. */
export interface PreloadHost {
  readonly slots: ReadonlySet<Slot>;
  readonly logger: Logger;
  transferOf(loaded: LoadedModule): ModuleTransfer;
  /** Stops a worker and gives the calls it had not started back to the queue; its replacement, if any. */
  replace(slot: Slot): Slot | undefined;
  /** Its invocations are refused with `reason` until it is loaded again. */
  setAside(digest: string, reason: string): void;
  /** A worker is done preloading and may take calls. */
  available(slot: Slot): void;
}

export class Preloader {
  private nextId = 1;

  constructor(private readonly host: PreloadHost) {}

  /** Shares `items` out among the workers that do not hold them yet; resolves once they have (or have gone). */
  start(items: PreloadItem[]): Promise<PreloadFailure[]> {
    return new Promise<PreloadFailure[]>((resolve) => {
      const run: PreloadRun = { active: 0, failures: [], failed: new Set(), done: resolve };
      for (const slot of this.host.slots) {
        if ((slot.state !== 'up' && slot.state !== 'starting') || slot.preload) continue;
        const queue = items.filter((item) => !slot.modules.has(item.loaded.id));
        if (queue.length === 0) continue;
        run.active++;
        slot.preload = { run, queue, current: undefined, id: 0, timer: undefined };
        if (slot.state === 'up') this.next(slot);
      }
      if (run.active === 0) resolve([]);
    });
  }

  /** Sends a worker its next module to preload, or ends its preload. */
  next(slot: Slot): void {
    const preload = slot.preload;
    if (!preload) return;
    let item: PreloadItem | undefined;
    while ((item = preload.queue.shift()) !== undefined) {
      if (!item.loaded.unloaded && !preload.run.failed.has(item.loaded) && !slot.modules.has(item.loaded.id)) break;
    }
    if (item === undefined) {
      slot.preload = undefined;
      slot.state = 'up';
      this.ended(preload.run);
      this.host.available(slot);
      return;
    }
    slot.state = 'preloading';
    slot.modules.add(item.loaded.id);
    preload.current = item;
    preload.id = this.nextId++;
    preload.timer = setTimeout(this.onDeadline, Math.min(item.request.timeoutMs, MAX_TIMER_MS), slot, preload.id);
    const { loaded, request } = item;
    post(slot, { type: 'preload', id: preload.id, moduleId: loaded.id, load: this.host.transferOf(loaded), abi: request.abi });
  }

  /** The worker says it readied message `id`'s module. */
  preloaded(slot: Slot, id: number): void {
    const preload = slot.preload;
    if (preload?.id !== id) return;
    clearTimeout(preload.timer);
    preload.current = undefined;
    this.next(slot);
  }

  /** The worker is taken out of service: its share of the run ends. */
  abandon(slot: Slot): void {
    if (!slot.preload) return;
    clearTimeout(slot.preload.timer);
    this.ended(slot.preload.run);
    slot.preload = undefined;
  }

  private readonly onDeadline = (slot: Slot, id: number): void => {
    const current = slot.preload?.current;
    if (slot.state === 'gone' || slot.preload?.id !== id || !current) return;
    this.failed(slot, `readying its first instance (its start function) ran past its time limit of ${current.request.timeoutMs} ms`);
  };

  /**
   * The worker did not get through the module it was preloading: the module is set aside, the
   * worker replaced, and so is every other worker stuck in the same module; each replacement
   * preloads what its worker had left.
   */
  failed(slot: Slot, reason: string): void {
    const preload = slot.preload as SlotPreload;
    const item = preload.current as PreloadItem;
    const { run } = preload;
    if (!run.failed.has(item.loaded)) {
      run.failed.add(item.loaded);
      const { digest, memoryLimitMb } = item.request;
      run.failures.push({ digest, memoryLimitMb, reason });
      this.host.setAside(digest, reason);
      this.host.logger.error({ digest, reason }, 'a restored module was set aside: its sandbox worker is replaced');
    }
    for (const other of [...this.host.slots]) {
      if (other.preload?.run === run && other.preload.current?.loaded === item.loaded) this.replace(other);
    }
    if (slot.state !== 'gone') this.replace(slot);
  }

  /** Stops a preloading worker; a new one takes over the modules it had not reached. */
  private replace(slot: Slot): void {
    const preload = slot.preload as SlotPreload;
    clearTimeout(preload.timer);
    slot.preload = undefined;
    const next = this.host.replace(slot);
    if (next) next.preload = { run: preload.run, queue: preload.queue, current: undefined, id: 0, timer: undefined };
    else this.ended(preload.run);
  }

  private ended(run: PreloadRun): void {
    if (--run.active === 0) run.done(run.failures);
  }
}
