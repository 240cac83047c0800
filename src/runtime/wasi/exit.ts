/**
 * Why a WASI guest stopped early. These are thrown from host functions to unwind the guest, and
 * also recorded on the host: a guest built with exception handling can catch a foreign exception
 * (`catch_all`), so the runner trusts the recorded state, not the exception reaching it.
 * Plain classes rather than Errors: they are control flow, and need no stack trace.
 */

/** proc_exit(code). */
export class ProcExit {
  constructor(readonly code: number) {}
}

/** stdout + stderr went past the invocation's max_output_bytes. */
export class OutputLimitExceeded {
  constructor(readonly limit: number) {}
}
