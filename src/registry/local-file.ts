/**
 * Opening a file a deploy names on the engine's host (`file:` modules, `oci:` layouts) without
 * letting the path wedge the engine. A FIFO opened for reading blocks until a writer comes, and
 * it blocks one of libuv's four pool threads with it: four such deploys and every later file
 * operation of the process (deploys, deletes, the store's writes, shutdown) waits forever. So:
 *
 * - what the path resolves to (symlinks followed) is checked with stat() before anything opens it:
 *   a FIFO, socket or device is refused there, never opened;
 * - the open itself is O_NONBLOCK (and O_NOCTTY), so that a path swapped for a FIFO between the
 *   check and the open cannot block either, and the handle is checked again with fstat() — the
 *   bytes read are those of the regular file that handle names, whatever the path names by then;
 * - every step races the pull's deadline: a read the kernel never finishes (a hung network mount)
 *   does not hold the deploy past it. The pool thread stays stuck in that case; nothing in Node can
 *   cancel a blocking syscall, which is why the checks above come first.
 */
import { constants, type Stats } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';

export type LocalFileProblem = 'missing' | 'directory' | 'special' | 'unreadable';

/** Why a local path cannot be read as a file; the caller turns it into its own EngineError. */
export class LocalFileError extends Error {
  constructor(
    readonly problem: LocalFileProblem,
    message: string,
  ) {
    super(message);
    this.name = 'LocalFileError';
  }
}

/** What a non-regular file is, as messages name it. */
export function kindOf(info: Stats): string {
  if (info.isDirectory()) return 'a directory';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isBlockDevice()) return 'a block device';
  return info.isFile() ? 'a regular file' : 'not a regular file';
}

function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function fromErrno(err: unknown): LocalFileError {
  const code = errnoCode(err);
  if (code === 'ENOENT' || code === 'ENOTDIR') return new LocalFileError('missing', 'no such file');
  // ENXIO: a socket (or a FIFO with no writer, opened for writing); never a readable file.
  if (code === 'ENXIO') return new LocalFileError('special', 'not a regular file');
  return new LocalFileError('unreadable', (err as Error).message);
}

/**
 * `work` unless `signal` fires first; then rejects with the signal's reason. What `work` resolves
 * to afterwards is handed to `late` (to close a handle nobody will use).
 */
export function beforeDeadline<T>(work: Promise<T>, signal: AbortSignal | undefined, late?: (value: T) => void): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) {
    void work.then(late, () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const onAbort = (): void => {
      if (done) return;
      done = true;
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (done) late?.(value);
        else {
          done = true;
          resolve(value);
        }
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        if (!done) {
          done = true;
          reject(err);
        }
      },
    );
  });
}

/** The kind of thing `file` resolves to, checked without opening it. Throws LocalFileError. */
export async function statLocal(file: string, signal?: AbortSignal): Promise<Stats> {
  try {
    return await beforeDeadline(stat(file), signal);
  } catch (err) {
    if (signal?.aborted) throw err;
    throw fromErrno(err);
  }
}

/**
 * Opens a regular file for reading, refusing anything else before it is opened (see above).
 * Throws LocalFileError, or the signal's reason once it fires. The caller closes the handle.
 */
export async function openRegularFile(file: string, signal?: AbortSignal): Promise<{ handle: FileHandle; info: Stats }> {
  const before = await statLocal(file, signal);
  if (before.isDirectory()) throw new LocalFileError('directory', 'a directory, not a regular file');
  if (!before.isFile()) throw new LocalFileError('special', `${kindOf(before)}, not a regular file`);
  let handle: FileHandle;
  try {
    handle = await beforeDeadline(open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY), signal, (late) => {
      void late.close().catch(() => {});
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw fromErrno(err);
  }
  try {
    const info = await beforeDeadline(handle.stat(), signal);
    if (!info.isFile()) throw new LocalFileError('special', `${kindOf(info)}, not a regular file`);
    return { handle, info };
  } catch (err) {
    // Past the deadline the close is not waited for: it would wait for the stuck fstat.
    const closing = handle.close().catch(() => {});
    if (!signal?.aborted) await closing;
    if (err instanceof LocalFileError || signal?.aborted) throw err;
    throw fromErrno(err);
  }
}

/** What a read asks for past what the file said it holds (Node's readFile reads unsized files so too). */
const READ_CHUNK = 64 * 1024;

/**
 * The file's bytes, read no further than a chunk past `limit`: a regular file may say it is empty
 * and still never end (/proc/self/pagemap), and reading it whole would spend gigabytes before the
 * bound is checked. The first read asks for exactly what the file says it holds (never over `limit`,
 * the caller checked): a module is read in one go into a buffer of its own, which a deploy then
 * hands to the compiling worker without a copy (ownsBuffer in runtime/pool/prepare-protocol.ts).
 */
async function readAtMost(handle: FileHandle, size: number, limit: number, signal: AbortSignal | undefined): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  let want = size > 0 ? size : READ_CHUNK;
  while (total <= limit) {
    const buffer = Buffer.allocUnsafe(want);
    const { bytesRead } = await beforeDeadline(handle.read(buffer, 0, want, null), signal);
    if (bytesRead === 0) break;
    chunks.push(buffer.subarray(0, bytesRead));
    total += bytesRead;
    want = READ_CHUNK;
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
}

/**
 * A whole regular file of at most `maxBytes` (checked before reading, and again on what was read,
 * since a file may grow meanwhile). `tooLarge` makes the caller's error for a file over the bound.
 */
export async function readRegularFile(
  file: string,
  maxBytes: number,
  tooLarge: () => Error,
  signal?: AbortSignal,
): Promise<Buffer> {
  const { handle, info } = await openRegularFile(file, signal);
  try {
    if (info.size > maxBytes) throw tooLarge();
    let bytes: Buffer;
    try {
      bytes = await readAtMost(handle, info.size, maxBytes, signal);
    } catch (err) {
      if (signal?.aborted) throw err;
      throw fromErrno(err);
    }
    if (bytes.length > maxBytes) throw tooLarge();
    return bytes;
  } finally {
    // Not awaited past the deadline: a close stuck behind a hung read would hold the answer too.
    await beforeDeadline(handle.close(), signal).catch(() => {});
  }
}
