/** How function entries look in answers: the historical text forms and the JSON entry of SPEC §2. */
import type { FunctionRecord } from '../store/index.js';

export interface FunctionEntryJson {
  func_name: string;
  func_image_name: string;
  func_local_path: string;
  wasi_cap: boolean;
  digest: string;
  size: number;
  deployed_at: string;
  abi: string;
  exports: string[];
  entrypoint: string;
  manifest_digest: string | null;
  limits: FunctionRecord['limits'];
}

export function entryJson(record: FunctionRecord, localPath: string): FunctionEntryJson {
  return {
    func_name: record.name,
    func_image_name: record.image,
    func_local_path: localPath,
    wasi_cap: record.analysis.wasiCap,
    digest: record.digest,
    size: record.size,
    deployed_at: record.deployedAt,
    abi: record.analysis.abi,
    exports: record.analysis.exports,
    entrypoint: record.analysis.entrypoint,
    manifest_digest: record.manifestDigest ?? null,
    limits: record.limits,
  };
}

/** `[{func_name: a, func_image_name: i, wasi_cap: false}, ...]`, as the historical engine printed it. */
export function listText(records: FunctionRecord[]): string {
  const items = records.map(
    (r) => `{func_name: ${r.name}, func_image_name: ${r.image}, wasi_cap: ${r.analysis.wasiCap}}`,
  );
  return `all deployed function info: [${items.join(', ')}]`;
}

/** Rust's Debug form of the historical FunctionEntry. */
export function queryText(record: FunctionRecord, localPath: string): string {
  return (
    `queried function info: FunctionEntry { func_name: ${JSON.stringify(record.name)}, ` +
    `func_image_name: ${JSON.stringify(record.image)}, func_local_path: ${JSON.stringify(localPath)}, ` +
    `wasi_cap: ${record.analysis.wasiCap} }`
  );
}
