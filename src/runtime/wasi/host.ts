/**
 * The engine's own WASI preview1 host (node:wasi is not a sandbox, by Node's own documentation).
 * It grants exactly what SPEC §3a lists — args, environ, clocks, random, stdin/stdout/stderr —
 * and answers every other preview1 function with an errno: no host file, directory, socket or
 * process is reachable because none is ever opened. A host serves one invocation at a time: a
 * reused instance keeps its host (its imports are bound at instantiation) and reset() gives it the
 * next invocation's args, environment, stdin and empty output, as a new host would have.
 */
import { randomFillSync } from 'node:crypto';
import type { WasmMemory } from '../wasm-api.js';
import { CLOCK_RESOLUTION_NS, Clocks } from './clocks.js';
import { Errno, EventType, FileType, Rights, STDERR, STDIN, STDOUT } from './constants.js';
import { ProcExit } from './exit.js';
import { GuestFault, GuestMemory } from './guest-memory.js';
import type { WrittenMap } from '../reuse/written-map.js';
import { OutputBudget, OutputBuffer } from './output.js';
import { pollOneoff } from './poll.js';
import type { WASI_SIGNATURES } from './signatures.js';

export interface WasiOptions {
  /** argv, exactly (SPEC §3a: no program name). */
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  stdin: Uint8Array;
  /** Bytes stdout and stderr may hold together. */
  maxOutputBytes: number;
}

/** A host function: i32 arguments arrive as numbers, i64 ones as BigInts. */
type HostFunction = (...args: never[]) => number | void;
export type WasiImports = Record<keyof typeof WASI_SIGNATURES, HostFunction>;

const encoder = new TextEncoder();

/** NUL-terminated strings packed in one buffer, as args_get/environ_get lay them out. */
class StringTable {
  readonly buffer: Uint8Array;
  readonly offsets: number[] = [];

  constructor(strings: readonly string[]) {
    const encoded = strings.map((s) => encoder.encode(s));
    this.buffer = new Uint8Array(encoded.reduce((sum, e) => sum + e.length + 1, 0));
    let at = 0;
    for (const e of encoded) {
      this.offsets.push(at);
      this.buffer.set(e, at);
      at += e.length + 1;
    }
  }

  sizes(mem: GuestMemory, countPtr: number, sizePtr: number): number {
    mem.setU32(countPtr, this.offsets.length);
    mem.setU32(sizePtr, this.buffer.length);
    return Errno.SUCCESS;
  }

  get(mem: GuestMemory, pointersPtr: number, bufPtr: number): number {
    const base = mem.check(bufPtr, this.buffer.length);
    mem.check(pointersPtr, this.offsets.length * 4);
    this.offsets.forEach((offset, i) => mem.setU32(pointersPtr + i * 4, base + offset));
    mem.bytes.set(this.buffer, base);
    return Errno.SUCCESS;
  }
}

const FDSTAT_SIZE = 24;
const FILESTAT_SIZE = 64;
const IOVEC_SIZE = 8;

const NO_ENV = new StringTable([]);

export class WasiHost {
  /** Kept from call to call, emptied by reset (a call's output is read when it ends). */
  readonly stdout = new OutputBuffer(0);
  readonly stderr = new OutputBuffer(0);
  budget!: OutputBudget;
  /** Set by proc_exit; kept even if the guest swallows the unwinding exception. */
  exitCode: number | undefined;
  readonly imports: WasiImports;

  private memory: WasmMemory | undefined;
  /** The memory's size as the guest sees it, when that is not the real size (reuse/virtual-size.ts). */
  private visibleBytes: (() => number) | undefined;
  /** Marks what host calls reach of memory, when the instance keeps a written map (reuse/written-map.ts). */
  private written: WrittenMap | undefined;
  private args!: StringTable;
  private env!: StringTable;
  private stdin!: Uint8Array;
  private stdinPos = 0;
  /** The standard streams still open (fd_close may close them). */
  private readonly open = new Set<number>();
  private clocks!: Clocks;

  constructor(options: WasiOptions) {
    this.reset(options);
    this.imports = this.guard(this.buildImports());
  }

  /** Starts a new invocation on this host: everything but the imports and memory is as new. */
  reset(options: WasiOptions): void {
    this.args = new StringTable(options.args);
    this.env = Object.keys(options.env).length === 0 ? NO_ENV : new StringTable(Object.entries(options.env).map(([k, v]) => `${k}=${v}`));
    this.stdin = options.stdin;
    this.stdinPos = 0;
    this.budget = new OutputBudget(options.maxOutputBytes);
    this.stdout.reset(options.maxOutputBytes);
    this.stderr.reset(options.maxOutputBytes);
    this.exitCode = undefined;
    this.open.clear();
    this.open.add(STDIN).add(STDOUT).add(STDERR);
    this.clocks = new Clocks();
  }

  /** Gives the host the instance's memory (WASI modules export it as `memory`), and the size the guest sees of it. */
  attach(memory: WasmMemory, visibleBytes?: () => number, written?: WrittenMap): void {
    this.memory = memory;
    this.visibleBytes = visibleBytes;
    this.written = written;
  }

  private mem(): GuestMemory {
    return new GuestMemory(this.memory, this.visibleBytes?.(), this.written);
  }

  /** Whether `fd` is one of the standard streams, still open (no other fd ever exists). */
  private isOpen(fd: number): boolean {
    return this.open.has(fd);
  }

  private write(fd: number, iovs: number, iovsLen: number, nwrittenPtr: number): number {
    if ((fd !== STDOUT && fd !== STDERR) || !this.isOpen(fd)) return Errno.BADF;
    const mem = this.mem();
    const count = iovsLen >>> 0;
    const base = mem.check(iovs, count * IOVEC_SIZE);
    let total = 0;
    for (let i = 0; i < count; i++) {
      const len = mem.u32(base + i * IOVEC_SIZE + 4);
      mem.check(mem.u32(base + i * IOVEC_SIZE), len);
      total += len;
    }
    mem.check(nwrittenPtr, 4);
    // Counted before anything is copied: output past the limit is never buffered.
    this.budget.take(total);
    const sink = fd === STDOUT ? this.stdout : this.stderr;
    for (let i = 0; i < count; i++) {
      sink.append(mem.u8s(mem.u32(base + i * IOVEC_SIZE), mem.u32(base + i * IOVEC_SIZE + 4)));
    }
    mem.setU32(nwrittenPtr, total);
    return Errno.SUCCESS;
  }

  private read(fd: number, iovs: number, iovsLen: number, nreadPtr: number): number {
    if (fd !== STDIN || !this.isOpen(fd)) return Errno.BADF;
    const mem = this.mem();
    const count = iovsLen >>> 0;
    const base = mem.check(iovs, count * IOVEC_SIZE);
    mem.check(nreadPtr, 4);
    let total = 0;
    for (let i = 0; i < count && this.stdinPos < this.stdin.length; i++) {
      const target = mem.u8s(mem.u32(base + i * IOVEC_SIZE), mem.u32(base + i * IOVEC_SIZE + 4));
      const chunk = this.stdin.subarray(this.stdinPos, this.stdinPos + target.length);
      target.set(chunk);
      this.stdinPos += chunk.length;
      total += chunk.length;
    }
    mem.setU32(nreadPtr, total);
    return Errno.SUCCESS;
  }

  private fdstat(fd: number, ptr: number): number {
    if (!this.isOpen(fd)) return Errno.BADF;
    const mem = this.mem();
    mem.fill(ptr, FDSTAT_SIZE);
    // Filetype "unknown", as a pipe would be: libc then sees no terminal and buffers fully.
    mem.setU8(ptr, FileType.UNKNOWN);
    const rights = fd === STDIN ? Rights.FD_READ : Rights.FD_WRITE;
    mem.setU64(ptr + 8, rights | Rights.POLL_FD_READWRITE);
    return Errno.SUCCESS;
  }

  private filestat(fd: number, ptr: number): number {
    if (!this.isOpen(fd)) return Errno.BADF;
    const mem = this.mem();
    mem.fill(ptr, FILESTAT_SIZE);
    mem.setU8(ptr + 16, FileType.UNKNOWN);
    mem.setU64(ptr + 24, 1n); // nlink
    if (fd === STDIN) mem.setU64(ptr + 32, BigInt(this.stdin.length));
    return Errno.SUCCESS;
  }

  /** For fd operations the standard streams do not support: EBADF if closed/unknown, else `errno`. */
  private unsupported(fd: number, errno: number): number {
    return this.isOpen(fd) ? errno : Errno.BADF;
  }

  private exit(code: number): never {
    this.exitCode = code >>> 0;
    throw new ProcExit(this.exitCode);
  }

  /**
   * Wraps every host function: a bad guest pointer answers EFAULT, and once the guest has exited
   * every further call unwinds it again (it may have caught the first unwinding).
   */
  private guard(functions: WasiImports): WasiImports {
    const guarded = {} as WasiImports;
    for (const [name, fn] of Object.entries(functions) as [keyof WasiImports, HostFunction][]) {
      guarded[name] = (...args: never[]): number | void => {
        if (this.exitCode !== undefined) throw new ProcExit(this.exitCode);
        try {
          return fn(...args);
        } catch (err) {
          if (err instanceof GuestFault) return Errno.FAULT;
          throw err;
        }
      };
    }
    return guarded;
  }

  private buildImports(): WasiImports {
    const denyPath = (): number => Errno.NOTCAPABLE;
    const sock = (fd: number): number => this.unsupported(fd, Errno.NOTSOCK);
    const notCapable = (fd: number): number => this.unsupported(fd, Errno.NOTCAPABLE);
    const seekless = (fd: number): number => this.unsupported(fd, Errno.SPIPE);
    const random = (ptr: number, len: number): number => {
      const target = this.mem().u8s(ptr, len >>> 0);
      randomFillSync(target);
      return Errno.SUCCESS;
    };

    return {
      args_get: (argv: number, buf: number) => this.args.get(this.mem(), argv, buf),
      args_sizes_get: (count: number, size: number) => this.args.sizes(this.mem(), count, size),
      environ_get: (env: number, buf: number) => this.env.get(this.mem(), env, buf),
      environ_sizes_get: (count: number, size: number) => this.env.sizes(this.mem(), count, size),
      clock_res_get: (id: number, ptr: number) => {
        if (this.clocks.now(id) === undefined) return Errno.INVAL;
        this.mem().setU64(ptr, CLOCK_RESOLUTION_NS);
        return Errno.SUCCESS;
      },
      clock_time_get: (id: number, _precision: bigint, ptr: number) => {
        const now = this.clocks.now(id);
        if (now === undefined) return Errno.INVAL;
        this.mem().setU64(ptr, now);
        return Errno.SUCCESS;
      },
      random_get: random,
      fd_write: (fd: number, iovs: number, len: number, ptr: number) => this.write(fd, iovs, len, ptr),
      fd_read: (fd: number, iovs: number, len: number, ptr: number) => this.read(fd, iovs, len, ptr),
      fd_fdstat_get: (fd: number, ptr: number) => this.fdstat(fd, ptr),
      fd_filestat_get: (fd: number, ptr: number) => this.filestat(fd, ptr),
      fd_close: (fd: number) => (this.open.delete(fd) ? Errno.SUCCESS : Errno.BADF),
      fd_seek: seekless,
      fd_tell: seekless,
      fd_pread: seekless,
      fd_pwrite: seekless,
      // No directory is preopened: libc probes fds from 3 up until EBADF and finds none.
      fd_prestat_get: () => Errno.BADF,
      fd_prestat_dir_name: () => Errno.BADF,
      // Output lives in memory, so it is always "synced".
      fd_sync: (fd: number) => this.unsupported(fd, Errno.SUCCESS),
      fd_datasync: (fd: number) => this.unsupported(fd, Errno.SUCCESS),
      fd_advise: notCapable,
      fd_allocate: notCapable,
      fd_fdstat_set_flags: notCapable,
      fd_fdstat_set_rights: notCapable,
      fd_filestat_set_size: notCapable,
      fd_filestat_set_times: notCapable,
      fd_readdir: notCapable,
      fd_renumber: notCapable,
      path_create_directory: denyPath,
      path_filestat_get: denyPath,
      path_filestat_set_times: denyPath,
      path_link: denyPath,
      path_open: denyPath,
      path_readlink: denyPath,
      path_remove_directory: denyPath,
      path_rename: denyPath,
      path_symlink: denyPath,
      path_unlink_file: denyPath,
      poll_oneoff: (inPtr: number, outPtr: number, n: number, neventsPtr: number) =>
        pollOneoff(this.mem(), inPtr, outPtr, n, neventsPtr, this.clocks, (fd, type) => {
          const ok = this.isOpen(fd) && (type === EventType.FD_READ ? fd === STDIN : fd === STDOUT || fd === STDERR);
          if (!ok) return { error: Errno.BADF, nbytes: 0n };
          const nbytes = type === EventType.FD_READ ? this.stdin.length - this.stdinPos : this.budget.remaining;
          return { error: Errno.SUCCESS, nbytes: BigInt(nbytes) };
        }),
      proc_exit: (code: number) => this.exit(code),
      proc_raise: () => Errno.NOSYS,
      sched_yield: () => Errno.SUCCESS,
      sock_accept: sock,
      sock_recv: sock,
      sock_send: sock,
      sock_shutdown: sock,
    };
  }
}
