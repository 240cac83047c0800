/** The runtime's public surface: what the engine and its tests import. */
export { analyzeModule, COMPONENTS_UNSUPPORTED, type AnalyzeOptions } from './analyze.js';
export { normalizeArgs } from './args.js';
export { runInvocation, type SandboxCall } from './sandbox.js';
export { toSandboxCall } from './abi/call.js';
export { InstanceRunner, type RunnerStats } from './instance-runner.js';
export { exposeState, type ExposedState } from './reuse/expose.js';
export { prepareForReuse } from './reuse/prepare.js';
export { virtualizeMemorySize } from './reuse/virtual-size.js';
export { injectPreemption, CHECK_INTERVAL, PREEMPT_MODULE } from './preempt/inject.js';
export { PreemptClock } from './preempt/clock.js';
export { warmUpFunction } from './pool/warm-up.js';
export { DEFAULT_MAX_TABLE_ENTRIES } from './pool/preparer.js';
export { WorkerPoolRuntime, DEFAULT_MAX_QUEUE, DEFAULT_PIPELINE_DEPTH, type WorkerPoolOptions } from './pool/worker-pool.js';
export { parseModule, wasmBinaryKind, withMemoryMaximum, withTableMaximum, type ParsedModule, type WasmBinaryKind } from './wasm-binary.js';
export { wasm, type WasmModule } from './wasm-api.js';
export type {
  Abi,
  AdmitRequest,
  AdmittedModule,
  CancelSignal,
  FunctionArgs,
  FunctionRuntime,
  InvocationLimits,
  InvocationRequest,
  InvocationResult,
  ModuleAnalysis,
  PortableModule,
  RuntimeStats,
  ValType,
} from './types.js';
