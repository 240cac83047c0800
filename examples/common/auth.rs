//! Shared logic of the `authentication` and `authentication-wasi` examples.
//!
//! Included into both crates with `#[path = "../common/auth.rs"] mod auth;` so that there is one
//! copy of the logic and the two modules answer byte for byte the same. No crates: the MD5 and the
//! JSON reader are written here.
//!
//! Contract: the input is the JSON text of the invocation's args, a flat object such as
//! `{"arg_uri":"yes","arg_body":"yes","arg_secret":"12345"}`. The function computes
//! `md5(arg_uri + "#" + arg_body + "#argfunc")` and answers
//! `{"status":"200","body":"<html><h1>Auth Pass!</h1><p>hash HASH</p></html>"}` when `arg_secret`
//! equals that hash, else
//! `{"status":"403","body":"<html><h1>Auth Forbidden!</h1><p>hash HASH secret SECRET</p></html>"}`.
//! A missing key counts as the empty string. Input that is not a flat JSON object answers
//! `{"status":"400","body":"<html><h1>Bad Request</h1><p>REASON</p></html>"}`.

/// Handles one request: `input` is the JSON text of the args; the answer is a JSON document.
pub fn handle(input: &[u8]) -> String {
    let fields = match parse_flat_object(input) {
        Ok(fields) => fields,
        Err(reason) => {
            return response("400", &format!("<html><h1>Bad Request</h1><p>{}</p></html>", html_escape(&reason)))
        }
    };
    let get = |key: &str| -> &str {
        // The last occurrence wins, as in most JSON readers.
        fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
    };
    let uri = get("arg_uri");
    let body = get("arg_body");
    let secret = get("arg_secret");

    let hash = md5_hex(format!("{}#{}#argfunc", uri, body).as_bytes());
    if secret == hash {
        response("200", &format!("<html><h1>Auth Pass!</h1><p>hash {}</p></html>", hash))
    } else {
        response(
            "403",
            &format!("<html><h1>Auth Forbidden!</h1><p>hash {} secret {}</p></html>", hash, html_escape(secret)),
        )
    }
}

fn response(status: &str, body: &str) -> String {
    format!("{{\"status\":\"{}\",\"body\":\"{}\"}}", status, json_escape(body))
}

/// Escapes text for an HTML element body, so a secret cannot inject markup.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes text for the inside of a JSON string literal.
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A tiny JSON reader for one flat object. Values are strings; numbers, true, false and null are
// accepted too and kept as their JSON text. A nested object or array is refused.

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

/// Parses `{"k":"v", ...}` into (key, value) pairs in document order.
pub fn parse_flat_object(input: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut r = Reader { s: input, i: 0 };
    let mut fields = Vec::new();
    r.ws();
    r.expect(b'{')?;
    r.ws();
    if r.peek() == Some(b'}') {
        r.i += 1;
    } else {
        loop {
            r.ws();
            let key = r.string()?;
            r.ws();
            r.expect(b':')?;
            r.ws();
            let value = r.value()?;
            fields.push((key, value));
            r.ws();
            match r.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(r.error("expected ',' or '}'")),
            }
        }
    }
    r.ws();
    if r.i != r.s.len() {
        return Err(r.error("unexpected text after the object"));
    }
    Ok(fields)
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        if c.is_some() {
            self.i += 1;
        }
        c
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn error(&self, what: &str) -> String {
        format!("invalid JSON args at byte {}: {}", self.i, what)
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.next() == Some(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected '{}'", c as char)))
        }
    }

    fn value(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'{' | b'[') => Err(self.error("nested objects and arrays are not supported")),
            Some(_) => {
                // A bare scalar (number, true, false, null): keep its text.
                let start = self.i;
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                let text = core::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.error("invalid UTF-8"))?;
                let is_number = !text.is_empty()
                    && text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
                if is_number || text == "true" || text == "false" || text == "null" {
                    Ok(text.to_string())
                } else {
                    Err(self.error("expected a value"))
                }
            }
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            match self.next() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => match self.next() {
                    Some(b'"') => out.push(b'"'),
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'/') => out.push(b'/'),
                    Some(b'b') => out.push(0x08),
                    Some(b'f') => out.push(0x0c),
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b't') => out.push(b'\t'),
                    Some(b'u') => {
                        let mut cp = self.hex4()?;
                        if (0xd800..0xdc00).contains(&cp) {
                            // A high surrogate must be followed by an escaped low surrogate.
                            if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                                return Err(self.error("unpaired surrogate"));
                            }
                            let lo = self.hex4()?;
                            if !(0xdc00..0xe000).contains(&lo) {
                                return Err(self.error("unpaired surrogate"));
                            }
                            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        } else if (0xdc00..0xe000).contains(&cp) {
                            return Err(self.error("unpaired surrogate"));
                        }
                        let c = char::from_u32(cp).ok_or_else(|| self.error("invalid \\u escape"))?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return Err(self.error("invalid escape")),
                },
                Some(c) if c < 0x20 => return Err(self.error("control character in string")),
                Some(c) => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.error("invalid UTF-8 in string"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.next() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.error("invalid \\u escape")),
            };
            v = v * 16 + d as u32;
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------------------------------------
// MD5 (RFC 1321), written out so the example needs no crate.

const S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, //
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, //
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, //
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

// K[i] = floor(abs(sin(i + 1)) * 2^32)
const K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// The MD5 digest of `data`.
pub fn md5(data: &[u8]) -> [u8; 16] {
    let mut state: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

    // Padding: 0x80, zeros to 56 mod 64, then the bit length as a little-endian u64.
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());

    for chunk in msg.chunks_exact(64) {
        let mut m = [0u32; 16];
        for (j, word) in chunk.chunks_exact(4).enumerate() {
            m[j] = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        }
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(K[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
    }

    let mut out = [0u8; 16];
    for (j, word) in state.iter().enumerate() {
        out[j * 4..j * 4 + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// The MD5 digest of `data` as 32 lowercase hex digits.
pub fn md5_hex(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(32);
    for byte in md5(data) {
        s.push(HEX[(byte >> 4) as usize] as char);
        s.push(HEX[(byte & 15) as usize] as char);
    }
    s
}
