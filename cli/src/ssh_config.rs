//! The block `perigee config-ssh` keeps in an OpenSSH client configuration: rendering it,
//! putting it in (replacing the previous one in place) and taking it out, leaving every
//! other byte of the file as it was.

/// First line of the block.
pub(crate) const START: &str = "# ------------START-PERIGEE-----------";
/// Last line of the block.
pub(crate) const END: &str = "# ------------END-PERIGEE------------";

/// What the block says.
pub(crate) struct Block<'a> {
    /// Absolute path of the perigee binary.
    pub(crate) binary: &'a str,
    /// The deployment the block was written for.
    pub(crate) deployment: &'a str,
    /// The user's perigee key.
    pub(crate) identity_file: &'a str,
    /// Host keys of workspaces, remembered on first use.
    pub(crate) known_hosts: &'a str,
    /// Extra arguments of `perigee ssh --stdio`, already words.
    pub(crate) extra_args: &'a [String],
}

/// Quotes `s` as one word for `/bin/sh` (OpenSSH runs a ProxyCommand with the user's shell
/// through `exec`), with `%` doubled because ssh expands `%` tokens first.
pub(crate) fn sh_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b));
    let quoted = if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    };
    quoted.replace('%', "%%")
}

/// Quotes a path for an ssh_config argument (`IdentityFile`, `UserKnownHostsFile`): double
/// quotes when it has a space; `%` doubled (tokens are expanded there too).
fn config_path(s: &str) -> String {
    let s = s.replace('%', "%%");
    if s.contains([' ', '\t']) {
        format!("\"{s}\"")
    } else {
        s
    }
}

/// The client options for `Host perigee.*`: written in the block, and passed with `-o` by
/// `perigee ssh`, so both connect alike.
pub(crate) fn client_options(
    identity_file: &str,
    known_hosts: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("IdentityFile", config_path(identity_file)),
        ("IdentitiesOnly", "yes".into()),
        ("UserKnownHostsFile", config_path(known_hosts)),
        ("StrictHostKeyChecking", "accept-new".into()),
        ("ConnectTimeout", "0".into()),
        ("LogLevel", "ERROR".into()),
    ]
}

impl Block<'_> {
    /// The block, start and end lines included, each line ending in `\n`.
    pub(crate) fn render(&self) -> String {
        let mut cmd = vec![sh_word(self.binary), "ssh".into(), "--stdio".into()];
        cmd.extend(self.extra_args.iter().map(|a| sh_word(a)));
        cmd.push("%h".into());
        let options: String = client_options(self.identity_file, self.known_hosts)
            .into_iter()
            .map(|(k, v)| format!("  {k} {v}\n"))
            .collect();
        format!(
            "{START}\n\
             # Written by `perigee config-ssh` for {deployment}; run it again to update,\n\
             # `perigee config-ssh --remove` to take it out. Edits inside are overwritten.\n\
             Host perigee.*\n\
             \x20 ProxyCommand {proxy}\n\
             {options}\
             {END}\n",
            deployment = self.deployment.replace('\n', " "),
            proxy = cmd.join(" "),
        )
    }
}

/// Where the block sits in `text`: its byte range, the end line's newline included.
fn find(text: &str) -> Result<Option<std::ops::Range<usize>>, String> {
    let mut start = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if bare == START {
            if start.is_some() {
                return Err(format!(
                    "two `{START}` lines without an end line between them: fix the file by hand"
                ));
            }
            start = Some(offset);
        } else if bare == END {
            let Some(s) = start else {
                return Err(format!(
                    "`{END}` without a start line: fix the file by hand"
                ));
            };
            if text[offset + line.len()..]
                .split_inclusive('\n')
                .any(|l| l.trim_end_matches(['\n', '\r']) == START)
            {
                return Err("more than one perigee block: remove the extra ones by hand".into());
            }
            return Ok(Some(s..offset + line.len()));
        }
        offset += line.len();
    }
    match start {
        Some(_) => Err(format!("`{START}` without `{END}`: fix the file by hand")),
        None => Ok(None),
    }
}

/// `text` with `block` in place of the current block, or appended after one newline (a blank
/// line when the file ends with a newline, the end of its last line when it does not) when
/// there is none.
pub(crate) fn upsert(text: &str, block: &str) -> Result<String, String> {
    Ok(match find(text)? {
        Some(r) => format!("{}{block}{}", &text[..r.start], &text[r.end..]),
        None if text.is_empty() => block.to_owned(),
        None => format!("{text}\n{block}"),
    })
}

/// `text` without the block, undoing exactly what [`upsert`] added: the newline it wrote
/// before an appended block goes too, so a file written once and removed is byte-for-byte
/// the original.
pub(crate) fn remove(text: &str) -> Result<Option<String>, String> {
    let Some(r) = find(text)? else {
        return Ok(None);
    };
    let (before, after) = (&text[..r.start], &text[r.end..]);
    if after.is_empty() {
        if let Some(b) = before.strip_suffix('\n') {
            return Ok(Some(b.to_owned()));
        }
    }
    Ok(Some(format!("{before}{after}")))
}

/// A line diff of the block between `old` and `new` (the rest never changes), as `-`/`+`
/// lines; empty when equal.
pub(crate) fn diff(old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let o: Vec<&str> = old.lines().collect();
    let n: Vec<&str> = new.lines().collect();
    // Common head and tail; what differs in between is shown.
    let head = o.iter().zip(&n).take_while(|(a, b)| a == b).count();
    let tail = o[head..]
        .iter()
        .rev()
        .zip(n[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = String::new();
    for l in &o[head..o.len() - tail] {
        out.push_str(&format!("-{l}\n"));
    }
    for l in &n[head..n.len() - tail] {
        out.push_str(&format!("+{l}\n"));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block(bin: &str) -> String {
        Block {
            binary: bin,
            deployment: "https://perigee.example.com",
            identity_file: "/home/a b/.config/perigee/ssh/id_ed25519",
            known_hosts: "/home/a b/.config/perigee/ssh/known_hosts",
            extra_args: &[],
        }
        .render()
    }

    const USER: &str =
        "# my hosts\nInclude ~/.ssh/config.d/*\n\nHost work\n  HostName 10.0.0.5\n  User me\n";

    #[test]
    fn written_twice_is_the_same_and_removed_is_the_original() {
        for original in [
            USER,
            "",
            "Host x\n  User y",
            "Host x\n\n",
            "Host x\r\n  User y\r\n",
        ] {
            let b = block("/usr/local/bin/perigee");
            let once = upsert(original, &b).unwrap();
            assert!(once.starts_with(original), "{once:?}");
            assert_eq!(upsert(&once, &b).unwrap(), once, "idempotent");
            assert_eq!(
                remove(&once).unwrap().as_deref(),
                Some(original),
                "{original:?}"
            );
            assert_eq!(remove(original).unwrap(), None);
        }
    }

    #[test]
    fn an_updated_block_replaces_the_old_one_in_place() {
        let old = block("/old/perigee");
        let text = format!("Host a\n\n{old}\nHost b\n  User c\n");
        let new = block("/new/perigee");
        let up = upsert(&text, &new).unwrap();
        assert_eq!(up, format!("Host a\n\n{new}\nHost b\n  User c\n"));
        let d = diff(&old, &new);
        assert!(
            d.contains("-  ProxyCommand /old/perigee")
                && d.contains("+  ProxyCommand /new/perigee"),
            "{d}"
        );
        assert_eq!(d.lines().count(), 2, "{d}");
        // Removed from the middle: the user's text around it stays.
        assert_eq!(
            remove(&up).unwrap().unwrap(),
            "Host a\n\n\nHost b\n  User c\n"
        );
    }

    #[test]
    fn paths_with_spaces_and_quotes_are_quoted_for_the_shell_and_ssh() {
        let b = block("/home/a b/it's/100%/perigee");
        assert!(
            b.contains(r"ProxyCommand '/home/a b/it'\''s/100%%/perigee' ssh --stdio %h"),
            "{b}"
        );
        assert!(
            b.contains("IdentityFile \"/home/a b/.config/perigee/ssh/id_ed25519\""),
            "{b}"
        );
        // The shell reads the word back as the path (after ssh turns %% into %).
        let word = sh_word("/home/a b/it's/100%/perigee").replace("%%", "%");
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf %s {word}")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "/home/a b/it's/100%/perigee"
        );
    }

    #[test]
    fn broken_markers_are_refused_not_guessed() {
        let b = block("/p");
        assert!(upsert(&format!("{START}\nHost x\n"), &b).is_err());
        assert!(upsert(&format!("{END}\n"), &b).is_err());
        let two = format!("{b}{b}");
        assert!(upsert(&two, &b).is_err());
        assert!(remove(&two).is_err());
    }
}
