/** Request body schemas of the management and invocation routes (SPEC §2). */
import { Type, type Static } from '@sinclair/typebox';

const functionName = Type.String({ description: 'Function name: 1-63 of [A-Za-z0-9_.-], starting alphanumeric' });

export const DeployBody = Type.Object(
  {
    function_name: functionName,
    function_image: Type.String({
      description: 'Image reference: [host[:port]/]repo[:tag][@sha256:…], oci:PATH[:tag] or file:PATH',
    }),
    wasi_cap: Type.Optional(Type.Boolean({ description: 'Run with WASI; omitted: decided from the imports' })),
    entrypoint: Type.Optional(Type.String({ description: 'Export to call (string/numeric ABI)' })),
    timeout_ms: Type.Optional(Type.Integer({ minimum: 1 })),
    memory_limit_mb: Type.Optional(Type.Integer({ minimum: 1 })),
    max_output_bytes: Type.Optional(Type.Integer({ minimum: 1 })),
    // additionalProperties, which OpenAPI 3.0 knows, rather than Type.Record's patternProperties, which it does not.
    env: Type.Optional(Type.Unsafe<Record<string, string>>(Type.Object({}, { additionalProperties: Type.String(), description: 'WASI environment' }))),
  },
  { additionalProperties: false },
);
export type DeployBody = Static<typeof DeployBody>;

export const NameBody = Type.Object({ function_name: functionName }, { additionalProperties: false });
export type NameBody = Static<typeof NameBody>;

export const InvokeBody = Type.Object(
  {
    function_name: functionName,
    // Shape checked by the runtime's args normalisation, which tells INVALID_ARGS from INVALID_REQUEST.
    args: Type.Optional(Type.Unknown({ description: 'Object of string values, or an array of strings' })),
  },
  { additionalProperties: false },
);
export type InvokeBody = Static<typeof InvokeBody>;
