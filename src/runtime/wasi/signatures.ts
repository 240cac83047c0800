/**
 * Every function of WASI preview1 (module `wasi_snapshot_preview1`) with its core WebAssembly
 * type, from the witx definitions (pointers and sizes are i32; 64-bit quantities — timestamps,
 * file sizes and offsets, rights, directory cookies — are i64; every function returns an errno
 * except proc_exit). Deploy checks a module's WASI imports against this table: a JavaScript host
 * function can be imported under any type, so without this check a mistyped import would run
 * the host with garbage arguments instead of being refused.
 */
import type { FuncType, WasmValType } from '../wasm-binary.js';

export const WASI_MODULE = 'wasi_snapshot_preview1';

const i32 = 'i32' satisfies WasmValType;
const i64 = 'i64' satisfies WasmValType;

const errnoFn = (...params: WasmValType[]): FuncType => ({ params, results: [i32] });

export const WASI_SIGNATURES: Readonly<Record<string, FuncType>> = {
  args_get: errnoFn(i32, i32),
  args_sizes_get: errnoFn(i32, i32),
  environ_get: errnoFn(i32, i32),
  environ_sizes_get: errnoFn(i32, i32),
  clock_res_get: errnoFn(i32, i32),
  clock_time_get: errnoFn(i32, i64, i32),
  fd_advise: errnoFn(i32, i64, i64, i32),
  fd_allocate: errnoFn(i32, i64, i64),
  fd_close: errnoFn(i32),
  fd_datasync: errnoFn(i32),
  fd_fdstat_get: errnoFn(i32, i32),
  fd_fdstat_set_flags: errnoFn(i32, i32),
  fd_fdstat_set_rights: errnoFn(i32, i64, i64),
  fd_filestat_get: errnoFn(i32, i32),
  fd_filestat_set_size: errnoFn(i32, i64),
  fd_filestat_set_times: errnoFn(i32, i64, i64, i32),
  fd_pread: errnoFn(i32, i32, i32, i64, i32),
  fd_prestat_get: errnoFn(i32, i32),
  fd_prestat_dir_name: errnoFn(i32, i32, i32),
  fd_pwrite: errnoFn(i32, i32, i32, i64, i32),
  fd_read: errnoFn(i32, i32, i32, i32),
  fd_readdir: errnoFn(i32, i32, i32, i64, i32),
  fd_renumber: errnoFn(i32, i32),
  fd_seek: errnoFn(i32, i64, i32, i32),
  fd_sync: errnoFn(i32),
  fd_tell: errnoFn(i32, i32),
  fd_write: errnoFn(i32, i32, i32, i32),
  path_create_directory: errnoFn(i32, i32, i32),
  path_filestat_get: errnoFn(i32, i32, i32, i32, i32),
  path_filestat_set_times: errnoFn(i32, i32, i32, i32, i64, i64, i32),
  path_link: errnoFn(i32, i32, i32, i32, i32, i32, i32),
  path_open: errnoFn(i32, i32, i32, i32, i32, i64, i64, i32, i32),
  path_readlink: errnoFn(i32, i32, i32, i32, i32, i32),
  path_remove_directory: errnoFn(i32, i32, i32),
  path_rename: errnoFn(i32, i32, i32, i32, i32, i32),
  path_symlink: errnoFn(i32, i32, i32, i32, i32),
  path_unlink_file: errnoFn(i32, i32, i32),
  poll_oneoff: errnoFn(i32, i32, i32, i32),
  proc_exit: { params: [i32], results: [] },
  proc_raise: errnoFn(i32),
  sched_yield: errnoFn(),
  random_get: errnoFn(i32, i32),
  sock_accept: errnoFn(i32, i32, i32),
  sock_recv: errnoFn(i32, i32, i32, i32, i32, i32),
  sock_send: errnoFn(i32, i32, i32, i32, i32),
  sock_shutdown: errnoFn(i32, i32),
};

export function isWasiFunction(name: string): boolean {
  return Object.hasOwn(WASI_SIGNATURES, name);
}
