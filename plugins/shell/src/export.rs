//! Reading what `export -p` prints, in dash's form (`export NAME='v'"'"'s'`) and bash's
//! (`declare -x NAME="v"` or `declare -x NAME=$'a\nb'`). Variables declared without a value
//! (`export NAME`) are left out: they are not in the environment.

/// Parses the output of `export -p` into (name, value) pairs, in order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(['\n', ' ']);
        if rest.is_empty() {
            return Ok(out);
        }
        let line_start = rest;
        rest = if let Some(r) = rest.strip_prefix("export ") {
            r
        } else if let Some(r) = rest.strip_prefix("declare ") {
            // `declare -x NAME=…`, with any flags (-x, -rx, …).
            let r = r.trim_start();
            match r.split_once(' ') {
                Some((flags, r)) if flags.starts_with('-') => r,
                _ => r,
            }
        } else {
            let line = line_start.lines().next().unwrap_or("");
            return Err(format!("unexpected line `{line}`"));
        };
        let name_end = rest.find(['=', '\n']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = &rest[name_end..];
        match rest.strip_prefix('=') {
            None => continue,
            Some(r) => {
                let (value, r) = word(r)?;
                out.push((name.to_string(), value));
                rest = r;
            }
        }
    }
}

/// Reads one shell word made of quoted and unquoted parts, up to an unquoted newline.
fn word(mut s: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    loop {
        if let Some(r) = s.strip_prefix("$'") {
            s = ansi_c(r, &mut value)?;
        } else if let Some(r) = s.strip_prefix('\'') {
            let end = r.find('\'').ok_or("unterminated single quote")?;
            value.push_str(&r[..end]);
            s = &r[end + 1..];
        } else if let Some(r) = s.strip_prefix('"') {
            s = double(r, &mut value)?;
        } else if let Some(r) = s.strip_prefix('\\') {
            let mut chars = r.chars();
            if let Some(c) = chars.next() {
                value.push(c);
            }
            s = chars.as_str();
        } else {
            match s.chars().next() {
                None | Some('\n') => return Ok((value, s)),
                Some(c) => {
                    value.push(c);
                    s = &s[c.len_utf8()..];
                }
            }
        }
    }
}

fn double<'a>(mut s: &'a str, value: &mut String) -> Result<&'a str, String> {
    loop {
        let mut chars = s.chars();
        match chars.next() {
            None => return Err("unterminated double quote".into()),
            Some('"') => return Ok(chars.as_str()),
            Some('\\') => {
                match chars.next() {
                    Some(c @ ('"' | '\\' | '$' | '`')) => value.push(c),
                    Some('\n') => {}
                    Some(c) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("unterminated double quote".into()),
                }
                s = chars.as_str();
            }
            Some(c) => {
                value.push(c);
                s = chars.as_str();
            }
        }
    }
}

fn ansi_c<'a>(mut s: &'a str, value: &mut String) -> Result<&'a str, String> {
    let mut bytes = Vec::new();
    loop {
        let mut chars = s.chars();
        match chars.next() {
            None => return Err("unterminated $'…' quote".into()),
            Some('\'') => {
                value.push_str(&String::from_utf8_lossy(&bytes));
                return Ok(chars.as_str());
            }
            Some('\\') => {
                let c = chars.next().ok_or("unterminated $'…' quote")?;
                let rest = chars.as_str();
                s = match c {
                    'n' => push(&mut bytes, b'\n', rest),
                    't' => push(&mut bytes, b'\t', rest),
                    'r' => push(&mut bytes, b'\r', rest),
                    'a' => push(&mut bytes, 0x07, rest),
                    'b' => push(&mut bytes, 0x08, rest),
                    'e' | 'E' => push(&mut bytes, 0x1b, rest),
                    'f' => push(&mut bytes, 0x0c, rest),
                    'v' => push(&mut bytes, 0x0b, rest),
                    '0'..='7' => {
                        let digits: String = std::iter::once(c)
                            .chain(rest.chars().take_while(|d| d.is_digit(8)).take(2))
                            .collect();
                        let byte = u8::from_str_radix(&digits, 8).map_err(|e| e.to_string())?;
                        push(&mut bytes, byte, &rest[digits.len() - 1..])
                    }
                    'x' => {
                        let digits: String = rest
                            .chars()
                            .take_while(char::is_ascii_hexdigit)
                            .take(2)
                            .collect();
                        let byte = u8::from_str_radix(&digits, 16).map_err(|e| e.to_string())?;
                        push(&mut bytes, byte, &rest[digits.len()..])
                    }
                    other => {
                        let mut buf = [0; 4];
                        bytes.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                        rest
                    }
                };
            }
            Some(c) => {
                let mut buf = [0; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                s = chars.as_str();
            }
        }
    }
}

fn push<'a>(bytes: &mut Vec<u8>, byte: u8, rest: &'a str) -> &'a str {
    bytes.push(byte);
    rest
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn dash_form() {
        let v = parse("export A='it'\"'\"'s \"q\" $x \\ back\nnewline'\nexport B\nexport C=''\n")
            .unwrap();
        assert_eq!(
            v,
            [
                (
                    "A".to_string(),
                    "it's \"q\" $x \\ back\nnewline".to_string()
                ),
                ("C".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn bash_form() {
        let v = parse(
            "declare -x A=$'it\\'s \"q\" $x \\\\ back\\nnewline'\ndeclare -x B=\"x\\\"y\\$z\"\ndeclare -x C\ndeclare -x D=$'tab\\there\\001'\n",
        )
        .unwrap();
        assert_eq!(v[0].1, "it's \"q\" $x \\ back\nnewline");
        assert_eq!(v[1].1, "x\"y$z");
        assert_eq!(v[2], ("D".to_string(), "tab\there\u{1}".to_string()));
    }
}
