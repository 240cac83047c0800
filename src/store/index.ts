export type { BlobStore, ClusterStore, FunctionChange, FunctionLimitsOverride, FunctionRecord, FunctionStore } from './types.js';
export { FileFunctionStore } from './file-function-store.js';
export { sha256Digest } from './blob-store.js';
