/**
 * The usage of `wasm-engine` and of each command. `serve`'s options are written from the settings
 * table (src/config/settings.ts), the one list of settings, so the usage names every one of them
 * with its environment variable and default.
 */
import { CONFIG_ENV, CONFIG_FLAG } from '../config/config-file.js';
import { SETTINGS } from '../config/settings.js';

const WIDTH = 100;
const INDENT = '        ';

/** `text` cut into lines of at most WIDTH characters, each after `indent`. */
function wrap(text: string, indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && indent.length + line.length + 1 + word.length > WIDTH) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(indent + line);
  return lines.join('\n');
}

/** A default as the usage shows it: what the engine would take here and now. */
function shownDefault(value: unknown): string {
  if (value === null || value === '' || (Array.isArray(value) && value.length === 0)) return 'none';
  if (Array.isArray(value)) return value.join(',');
  return String(value);
}

function defaultOf(read: () => unknown): string {
  try {
    return shownDefault(read());
  } catch {
    return 'computed at start';
  }
}

/** Every setting of `serve`: flag, environment variables, default, and what it does; each line after `margin`. */
export function serveOptions(margin = ''): string {
  const entries = Object.values(SETTINGS).map((setting) => {
    const head = `  --${setting.flag}${setting.arg ? ` ${setting.arg}` : ''}  (${setting.env.join(', ')}; default ${defaultOf(setting.default)})`;
    return setting.help ? `${head}\n${wrap(setting.help, INDENT)}` : head;
  });
  entries.push(
    `  --${CONFIG_FLAG} FILE  (${CONFIG_ENV}; default none)\n${wrap(
      'A JSON or YAML file of these settings: its keys are the flag names without -- (camelCase works too), lists are sequences.',
      INDENT,
    )}`,
  );
  return entries.join('\n').replace(/^/gm, margin);
}

const SERVE_HEAD = `serve [options]
  Runs the engine. Each setting comes from its flag, else its environment variable, else the
  configuration file (--${CONFIG_FLAG}), else its default; a bad value stops the start (exit 2).`;

/** Each other command's synopsis, continuation lines indented under its first. */
const CLIENT_COMMANDS: Record<string, string> = {
  deploy: `deploy NAME IMAGE [--wasi | --no-wasi] [--entrypoint E] [--timeout-ms N]
                    [--memory-limit-mb N] [--max-output-bytes N] [--env K=V ...]`,
  delete: 'delete NAME',
  list: 'list',
  query: 'query NAME',
  invoke: 'invoke NAME [k=v ...]      (values without "=" are positional: invoke fibonacci 10)',
};
const CLIENT_TITLE = 'Client (talk to a running engine; --url, default http://127.0.0.1:10000; --json for JSON output):';

const IMAGE_COMMANDS: Record<string, string> = {
  push: `push FILE.wasm REF [--format docker|wasm] [--username U --password-stdin] [--json]
                     [--registry-credentials FILE] [--docker-config PATH|none]
                     [--insecure-registries a,b] [--timeout-ms N] [--registry-retries N]`,
  pack: 'pack FILE.wasm --oci-layout DIR[:TAG] [--format docker|wasm] [--json]',
};
const IMAGES_TITLE = 'Images (no engine needed):';

const section = (title: string, commands: Record<string, string>): string =>
  [title, ...Object.values(commands).map((synopsis) => `  ${synopsis}`)].join('\n');

const EXIT_CODES = 'Exit codes: 0 success, 1 the engine said no (or could not be reached), 2 usage error.';

export const USAGE = `usage: wasm-engine <command> [options]   (wasm-engine <command> --help: that command only;
                                          wasm-engine --version: the release and commit of this build)

Engine:
  ${SERVE_HEAD.replace(/\n/g, '\n  ')}

${serveOptions('  ')}

${section(CLIENT_TITLE, CLIENT_COMMANDS)}

${section(IMAGES_TITLE, IMAGE_COMMANDS)}

${EXIT_CODES}`;

const CLIENT_OPTIONS = 'Options of every client command: --url URL, the engine (default http://127.0.0.1:10000); --json, print its JSON answer.';

/** `usage: wasm-engine SYNOPSIS`, continuation lines kept under the synopsis's first arguments. */
const synopsisUsage = (synopsis: string): string => {
  const prefix = 'usage: wasm-engine ';
  return prefix + synopsis.replace(/\n/g, `\n${' '.repeat(prefix.length - 2)}`);
};

/** The usage of one command, or undefined for a command there is none of. */
export function commandUsage(command: string): string | undefined {
  if (command === 'serve') return `usage: wasm-engine ${SERVE_HEAD}\n\n${serveOptions()}\n\n${EXIT_CODES}`;
  const client = Object.hasOwn(CLIENT_COMMANDS, command) ? CLIENT_COMMANDS[command] : undefined;
  if (client !== undefined) return `${synopsisUsage(client)}\n\n${CLIENT_OPTIONS}\n\n${EXIT_CODES}`;
  const image = Object.hasOwn(IMAGE_COMMANDS, command) ? IMAGE_COMMANDS[command] : undefined;
  if (image !== undefined) return `${synopsisUsage(image)}\n\n${EXIT_CODES}`;
  return undefined;
}
