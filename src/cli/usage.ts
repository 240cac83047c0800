export const USAGE = `usage: wasm-engine <command> [options]

Engine:
  serve [--port N] [--host H] [--data-dir DIR] [--log-level L] [--timeout-ms N]
        [--memory-limit-mb N] [--max-output-bytes N] [--workers N] [--max-queue N]
        [--body-limit-bytes N] [--insecure-registries a,b] [--shutdown-timeout-ms N]
        [--registry-credentials FILE] [--docker-config PATH|none] [--max-image-bytes N]
        [--registry-connect-timeout-ms N] [--registry-timeout-ms N] [--registry-retries N]

Client (talk to a running engine; --url, default http://127.0.0.1:10000; --json for JSON output):
  deploy NAME IMAGE [--wasi | --no-wasi] [--entrypoint E] [--timeout-ms N]
                    [--memory-limit-mb N] [--max-output-bytes N] [--env K=V ...]
  delete NAME
  list
  query NAME
  invoke NAME [k=v ...]      (values without "=" are positional: invoke fibonacci 10)

Images (no engine needed):
  push FILE.wasm REF [--format docker|wasm] [--username U --password-stdin] [--json]
                     [--registry-credentials FILE] [--docker-config PATH|none]
                     [--insecure-registries a,b] [--timeout-ms N] [--registry-retries N]
  pack FILE.wasm --oci-layout DIR[:TAG] [--format docker|wasm] [--json]

Exit codes: 0 success, 1 the engine said no (or could not be reached), 2 usage error.`;
