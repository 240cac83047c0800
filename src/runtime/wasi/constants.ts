/** Numbers from the WASI preview1 specification (witx `typenames`), as wasi-libc's api.h has them. */

/** errno values the host answers. */
export const Errno = {
  SUCCESS: 0,
  BADF: 8,
  FAULT: 21,
  INVAL: 28,
  IO: 29,
  NOSYS: 52,
  NOTSOCK: 57,
  NOTSUP: 58,
  SPIPE: 70,
  NOTCAPABLE: 76,
} as const;

export const ClockId = {
  REALTIME: 0,
  MONOTONIC: 1,
  PROCESS_CPUTIME: 2,
  THREAD_CPUTIME: 3,
} as const;

export const FileType = {
  UNKNOWN: 0,
  CHARACTER_DEVICE: 2,
} as const;

/** Rights bits (fdstat.fs_rights_base). */
export const Rights = {
  FD_READ: 1n << 1n,
  FD_WRITE: 1n << 6n,
  POLL_FD_READWRITE: 1n << 27n,
} as const;

export const EventType = {
  CLOCK: 0,
  FD_READ: 1,
  FD_WRITE: 2,
} as const;

/** subclockflags: the timeout is an absolute time rather than relative to now. */
export const SUBSCRIPTION_CLOCK_ABSTIME = 1;

export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
