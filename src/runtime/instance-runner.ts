/**
 * Runs the invocations of one module under one ABI on one thread, and decides what instance each
 * call gets. SPEC §3 isolation — every call observes the module's initial state — is kept in one
 * of two ways:
 *
 * - Reuse. When the module's whole state can be read and reset from JavaScript (reuse/expose.ts
 *   exported it) an instance is snapshotted once, pristine, and after each successful call its
 *   memory bytes, mutable globals and table entries are written back. An instance whose table grew
 *   during the call, or whose call failed, is discarded instead, as is one whose memory grew unless
 *   the module's memory size was made virtual (reuse/virtual-size.ts: nothing can shrink a memory,
 *   but the size the guest sees can be put back); a failed call may have left state mid-way that
 *   we would rather not reason about.
 * - Fresh instances, for everything else (and after a discard).
 *
 * Either way the work that readies the next instance — restore, or instantiation — is done by
 * settle(), which the worker calls after it has posted the answer: the caller does not wait for it.
 *
 * Rust's allocator on wasm32-unknown-unknown grows memory on its first allocation in every fresh
 * instance; with the size made virtual such modules are reused too. Where the rewrite could not be
 * made, an instance that grew is discarded, and since taking a snapshot is not free (reading a
 * funcref table makes a JavaScript function for every entry), a runner whose instances keep
 * growing stops taking snapshots, and tries again now and then.
 */
import { EngineError } from '../errors.js';
import { callNumeric } from './abi/numeric.js';
import { callString, prepareString, type StringInstance } from './abi/string-abi.js';
import { callWasi, releaseWasiHost, wasiHost } from './abi/wasi.js';
import type { AbiOutput, SandboxCall } from './abi/call.js';
import type { ExposedState } from './reuse/expose.js';
import { MemoryImage, Snapshot } from './reuse/snapshot.js';
import { guestFailure } from './traps.js';
import type { Abi, InvocationResult } from './types.js';
import type { WasiHost } from './wasi/host.js';
import { ProcExit } from './wasi/exit.js';
import { visibleMemoryBytes } from './reuse/virtual-size.js';
import { WrittenMap } from './reuse/written-map.js';
import { wasm, type WasmMemory, type WasmModule } from './wasm-api.js';
import { UNARMED_CLOCK, type PreemptClock } from './preempt/clock.js';

/** Discards in a row, for growth, after which new instances are made without a snapshot. */
const GROWTH_STREAK = 4;
/** While they are, one instance in this many gets a snapshot again, in case the calls changed. */
const PROBE_EVERY = 32;

/** One instance and what its ABI keeps beside it. */
interface Slot {
  exports: Readonly<Record<string, unknown>>;
  /** The instance's memory, exported or not (reuse exports it under a reserved name). */
  memory: WasmMemory | undefined;
  /** The written map, when the module keeps one (reuse/written-map.ts). */
  written: WrittenMap | undefined;
  string: StringInstance | undefined;
  host: WasiHost | undefined;
  snapshot: Snapshot | undefined;
}

export interface RunnerStats {
  /** Instances restored after a call for the next one. */
  reused: number;
  /** Instances made. */
  instantiated: number;
}

export class InstanceRunner {
  /** A pristine instance for the next call. */
  private ready: Slot | undefined;
  /** The instance the last call ran in, until settle(); `clean` when that call succeeded. */
  private used: Slot | undefined;
  private clean = false;
  /** Pristine memory, taken from the first instance and shared by later ones (instantiation is deterministic). */
  private image: MemoryImage | undefined;
  /** Why instances are not reused; undefined while they are (or may be). */
  private noReuse: string | undefined;
  /** Successful calls in a row whose instance could not be restored because it grew. */
  private growthStreak = 0;
  private sinceProbe = 0;
  readonly stats: RunnerStats = { reused: 0, instantiated: 0 };
  lastUsed = 0;

  constructor(
    private readonly module: WasmModule,
    private readonly abi: Abi,
    private readonly state: ExposedState | undefined,
    noReuseReason?: string,
    /** Answers the module's preemption checks (preempt/): its thread's clock, armed per call by the caller. */
    private readonly clock: PreemptClock = UNARMED_CLOCK,
  ) {
    this.noReuse = state ? noReuseReason : (noReuseReason ?? 'reuse was not asked for');
  }

  /** Why this module's instances are not reused, or undefined when they are. */
  get reuseRefused(): string | undefined {
    return this.noReuse;
  }

  /** Bytes of guest memory (and of its written map) this runner keeps alive between calls. */
  get memoryBytes(): number {
    const slot = this.ready ?? this.used;
    return (slot?.memory?.buffer.byteLength ?? 0) + (slot?.written?.byteLength ?? 0);
  }

  /** Runs one call. Throws EngineError: FUNCTION_FAILED, INVALID_ARGS, or INTERNAL for an engine bug. */
  run(call: SandboxCall): InvocationResult {
    if (call.abi !== this.abi) throw new EngineError('INTERNAL', `a ${call.abi} call reached a ${this.abi} runner`);
    const started = performance.now();
    this.lastUsed = started;
    // Normally done by the worker after the previous answer; a no-op then.
    this.settle();
    let slot = this.ready;
    this.ready = undefined;
    if (!slot) {
      try {
        slot = this.instantiate(false);
      } catch (err) {
        // A start function that called proc_exit(0) ran to a successful end, with no output.
        if (err instanceof ProcExit && err.code === 0) return { output: '', stderr: '', durationMs: performance.now() - started };
        throw instantiationFailure(err);
      }
    }
    this.used = slot;
    this.clean = false;
    const out = this.call(slot, call);
    this.clean = true;
    return { ...out, durationMs: performance.now() - started };
  }

  /**
   * Readies the next instance: restores the last one when the call succeeded and nothing grew,
   * else makes a new one — unless `instantiate` is false: then the next call makes it (a restore
   * runs no guest code; an instantiation runs the start function). Never throws (an instance that
   * cannot be made is made again, and fails visibly, by the next call).
   */
  settle(instantiate = true): void {
    const used = this.used;
    this.used = undefined;
    if (used && this.clean && used.snapshot) {
      if (used.snapshot.restore()) {
        if (used.host) releaseWasiHost(used.host);
        this.growthStreak = 0;
        this.ready = used;
        this.stats.reused++;
        return;
      }
      this.growthStreak++;
    }
    if (this.ready || !instantiate) return;
    try {
      this.ready = this.instantiate(true);
    } catch {
      this.ready = undefined;
    }
  }

  /**
   * Has an instance ready for the next call, made now if need be (run() would make it otherwise),
   * so that a caller can start its clock once guest code is about to run. Never throws: an
   * instance that cannot be made is made again, and fails visibly, by run().
   */
  prepare(): void {
    // As run() would: a first instance is made without scanning its memory for the image, which a
    // cold start should not wait for (the settle() after the answer takes it).
    this.settle(false);
    if (this.ready) return;
    try {
      this.ready = this.instantiate(false);
    } catch {
      this.ready = undefined;
    }
  }

  /** Drops every instance (the module is evicted, or idle). */
  dispose(): void {
    this.ready = undefined;
    this.used = undefined;
  }

  /**
   * Makes an instance; with a snapshot when it may be reused. `takeImage`: may scan a first pristine
   * memory for the image (only after an answer: it costs about a millisecond per 4 MiB, which a
   * cold start should not wait for).
   */
  private instantiate(takeImage: boolean): Slot {
    let host: WasiHost | undefined;
    let instance;
    const virtualSize = this.state?.virtualSize;
    let written: WrittenMap | undefined;
    if (this.abi === 'wasi') {
      const made = wasiHost();
      host = made.host;
      instance = new wasm.Instance(this.module, { ...this.clock.imports, ...made.imports });
      written = virtualSize && new WrittenMap(instance.exports[virtualSize.written] as WasmMemory);
      // WASI host calls check pointers against the size the guest sees, and mark what they reach.
      host.attach(instance.exports['memory'] as WasmMemory, virtualSize ? visibleMemoryBytes(instance.exports, virtualSize) : undefined, written);
    } else {
      instance = new wasm.Instance(this.module, this.clock.imports);
      written = virtualSize && new WrittenMap(instance.exports[virtualSize.written] as WasmMemory);
    }
    this.stats.instantiated++;
    const exports = instance.exports;
    const memoryName = this.state?.memory ?? 'memory';
    const memory = exports[memoryName] as WasmMemory | undefined;
    const slot: Slot = { exports, memory, written, string: undefined, host, snapshot: undefined };
    if (this.abi === 'string') slot.string = prepareString(exports, virtualSize, written);
    const snapshotPays = this.growthStreak < GROWTH_STREAK || ++this.sinceProbe % PROBE_EVERY === 0;
    if (this.noReuse === undefined && this.state && snapshotPays) {
      if (!this.image && takeImage) {
        const image = MemoryImage.take(exports, this.state);
        if ('reason' in image) this.noReuse = image.reason;
        else this.image = image;
      }
      if (this.image) slot.snapshot = Snapshot.take(exports, this.state, this.image, written);
    }
    return slot;
  }

  private call(slot: Slot, call: SandboxCall): AbiOutput {
    switch (call.abi) {
      case 'wasi':
        return callWasi(slot.exports, slot.host as WasiHost, call);
      case 'string':
        try {
          return callString(slot.string as StringInstance, call.entrypoint, call.json, call.maxOutputBytes);
        } catch (err) {
          throw guestFailure(err);
        }
      case 'numeric':
        try {
          return callNumeric(slot.exports, call.entrypoint, call.values);
        } catch (err) {
          throw guestFailure(err);
        }
    }
  }
}

/** A failure while making the instance is the call's: a start function that trapped or exited. */
function instantiationFailure(err: unknown): EngineError {
  if (err instanceof ProcExit) {
    return new EngineError('FUNCTION_FAILED', `the function exited with exit code ${err.code} while it was instantiated`);
  }
  return guestFailure(err);
}
