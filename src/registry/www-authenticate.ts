/**
 * Parses `WWW-Authenticate` (RFC 9110 §11.6.1): one or more challenges, each a scheme followed by
 * a token68 or by comma-separated `name=value` parameters whose values may be quoted strings with
 * backslash escapes. Registries put commas inside quoted scopes
 * (`scope="repository:a/b:pull,push"`), so splitting on commas is wrong.
 */

export interface AuthChallenge {
  /** Lower-cased scheme, e.g. `bearer`, `basic`. */
  scheme: string;
  /** Parameters by lower-cased name, values unquoted. */
  params: Record<string, string>;
  token68?: string;
}

const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;
const TOKEN68 = /[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))/y;

export function parseWwwAuthenticate(header: string | string[] | undefined): AuthChallenge[] {
  if (header === undefined) return [];
  if (Array.isArray(header)) return header.flatMap((h) => parseWwwAuthenticate(h));

  const challenges: AuthChallenge[] = [];
  let i = 0;
  const skipSpace = (): void => {
    while (header[i] === ' ' || header[i] === '\t') i += 1;
  };
  const match = (re: RegExp): string | undefined => {
    re.lastIndex = i;
    const m = re.exec(header);
    if (!m) return undefined;
    i = re.lastIndex;
    return m[0];
  };
  const quoted = (): string => {
    // At the opening quote. An unterminated string takes the rest of the header.
    let value = '';
    i += 1;
    while (i < header.length && header[i] !== '"') {
      if (header[i] === '\\' && i + 1 < header.length) i += 1;
      value += header[i];
      i += 1;
    }
    i += 1;
    return value;
  };

  let current: AuthChallenge | undefined;
  while (i < header.length) {
    skipSpace();
    if (header[i] === ',') {
      i += 1;
      continue;
    }
    const token = match(TOKEN);
    if (token === undefined) {
      i += 1; // not a token: skip the stray character rather than give up on the header
      continue;
    }
    skipSpace();
    if (current && header[i] === '=') {
      i += 1;
      skipSpace();
      const value = header[i] === '"' ? quoted() : (match(TOKEN) ?? '');
      current.params[token.toLowerCase()] = value;
      continue;
    }
    current = { scheme: token.toLowerCase(), params: {} };
    challenges.push(current);
    const token68 = match(TOKEN68);
    if (token68 !== undefined) current.token68 = token68;
  }
  return challenges;
}
