/**
 * `wasm-engine pack FILE.wasm --oci-layout DIR[:TAG] [--format docker|wasm]`: writes the image
 * `push` would push into an OCI image layout, for `oci:DIR:TAG` deploys, skopeo or umoci. The
 * `docker` format is written with the OCI equivalents of Docker's media types (skopeo only reads
 * OCI manifests from a layout); config and layer bytes are the same as pushed.
 */
import { parseCommandArgs } from './parse-args.js';
import { DEFAULT_TAG, parseImageReference, writeOciLayout } from '../registry/index.js';
import { CommandUsageError, commandFailure, imageFromFile, parseFormat, processIo, type CommandIo } from './push.js';

const PACK_OPTIONS = {
  'oci-layout': { type: 'string' },
  format: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

export async function packCommand(argv: string[], io: CommandIo = processIo()): Promise<number> {
  try {
    const { values, positionals } = parseCommandArgs({ args: argv, options: PACK_OPTIONS, allowPositionals: true, strict: true });
    if (positionals.length !== 1) throw new CommandUsageError('pack takes FILE.wasm --oci-layout DIR[:TAG]');
    const layoutArg = values['oci-layout'];
    if (layoutArg === undefined || layoutArg === '') throw new CommandUsageError('pack needs --oci-layout DIR[:TAG]');
    const format = parseFormat(values.format);
    // The same grammar as an `oci:` image reference, so what pack writes is what deploy reads.
    const target = parseImageReference(`oci:${layoutArg}`);
    if (target.kind !== 'oci') throw new CommandUsageError(`--oci-layout ${layoutArg} is not DIR[:TAG]`);
    if (target.digest !== undefined) throw new CommandUsageError('--oci-layout takes DIR[:TAG], not a digest');
    const tag = target.tag ?? DEFAULT_TAG;
    const image = await imageFromFile(positionals[0] as string, format, 'oci');
    const result = await writeOciLayout(image, target.dir, tag);
    const reference = `oci:${result.dir}:${tag}`;
    if (values.json) {
      io.stdout.write(`${JSON.stringify({ layout: result.dir, tag, reference, digest: result.digest, mediaType: image.manifest.mediaType, format, file: image.fileName })}\n`);
    } else {
      io.stdout.write(`packed ${reference}@${result.digest}\n`);
    }
    return 0;
  } catch (err) {
    return commandFailure(io, err);
  }
}
