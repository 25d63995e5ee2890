//! `perigee config-ssh` (one marked block in `~/.ssh/config` so that `ssh perigee.WS` works)
//! and `perigee ssh` (OpenSSH through a perigee tunnel; `--stdio` is the ProxyCommand).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use perigee_api::users::{AddKey, KeyAdded};

use crate::ssh_config::{self, Block};
use perigee_client::api::Client;

/// Host names in the block are `perigee.WORKSPACE`.
pub(crate) const HOST_PREFIX: &str = "perigee.";

/// Arguments of `perigee config-ssh`.
#[derive(clap::Args)]
pub(crate) struct ConfigSshArgs {
    /// The OpenSSH client configuration to edit [default: ~/.ssh/config].
    #[arg(long, value_name = "FILE")]
    ssh_config_file: Option<PathBuf>,
    /// Print the change as a diff and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Take perigee's block out, leaving the rest of the file byte for byte.
    #[arg(long)]
    remove: bool,
    /// Port of the SSH server inside workspaces that `perigee ssh` connects to.
    #[arg(long, default_value_t = SSH_PORT)]
    ssh_port: u16,
}

/// Where workspaces' SSH servers listen unless told otherwise.
const SSH_PORT: u16 = 22;

/// Arguments of `perigee ssh`.
#[derive(clap::Args)]
pub(crate) struct SshArgs {
    /// Workspace name (`perigee.NAME`, as OpenSSH passes it to a ProxyCommand, works too).
    workspace: String,
    /// Join stdin/stdout to the workspace's SSH server: the ProxyCommand of `config-ssh`.
    #[arg(long)]
    stdio: bool,
    /// Port of the SSH server inside the workspace.
    #[arg(long, default_value_t = SSH_PORT)]
    port: u16,
    /// With `--stdio`: a plain stream, not resumable. By default the stream to the agent's
    /// SSH server (port 22) survives a brief drop of the tunnel under it: perigee reconnects
    /// and the SSH session goes on.
    #[arg(long, env = "PERIGEE_SSH_NO_RESUME", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    no_resume: bool,
    /// Command to run instead of a shell (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set; pass --ssh-config-file")
}

/// The user's perigee key and known-hosts file, in perigee's config directory.
fn ssh_dir() -> anyhow::Result<PathBuf> {
    Ok(perigee_client::session::config_dir()?.join("ssh"))
}

/// The perigee key pair, generated with OpenSSH's `ssh-keygen` when missing; returns the
/// private key's path and the public key line.
fn ensure_key(dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let key = dir.join("id_ed25519");
    let public = dir.join("id_ed25519.pub");
    if !key.exists() {
        relay_core::create_private_dir(dir)?;
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "perigee", "-f"])
            .arg(&key)
            .output()
            .context("running ssh-keygen to make your perigee SSH key (install OpenSSH's client: `apt install openssh-client`)")?;
        anyhow::ensure!(
            out.status.success(),
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        eprintln!("perigee: generated SSH key {}", key.display());
    }
    let line = std::fs::read_to_string(&public).with_context(|| {
        format!(
            "reading {} (delete {} to make a new pair)",
            public.display(),
            key.display()
        )
    })?;
    Ok((key, line.trim().to_owned()))
}

/// Writes `text` to `path` through a temporary file and a rename, keeping the file's mode
/// (new files: 0600), so a crash never leaves half a config.
fn write_keeping_mode(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.perigee-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config"),
        std::process::id()
    ));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

pub(crate) async fn config_ssh(a: ConfigSshArgs) -> anyhow::Result<()> {
    let path = match a.ssh_config_file.clone() {
        Some(p) => p,
        None => home()?.join(".ssh/config"),
    };
    // Edit the file a symlink points at, not the link.
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let old = match std::fs::read(&path) {
        Ok(b) => {
            String::from_utf8(b).with_context(|| format!("{} is not UTF-8 text", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = if a.remove {
        match ssh_config::remove(&old).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))? {
            Some(t) => t,
            None => {
                println!("No perigee block in {}: nothing to remove.", path.display());
                return Ok(());
            }
        }
    } else {
        let client = Client::from_session()?;
        let dir = ssh_dir()?;
        let (key, public) = if a.dry_run {
            (dir.join("id_ed25519"), String::new())
        } else {
            ensure_key(&dir)?
        };
        if !a.dry_run {
            let r: KeyAdded = client
                .post(
                    "/api/v2/users/me/ssh-keys",
                    &AddKey {
                        public_key: public.clone(),
                    },
                )
                .await
                .context("uploading your public key")?;
            if r.created {
                eprintln!("perigee: uploaded public key {}", r.fingerprint);
            }
        }
        let binary = std::env::current_exe()
            .and_then(std::fs::canonicalize)
            .context("locating the perigee binary")?;
        let extra: Vec<String> = if a.ssh_port == SSH_PORT {
            Vec::new()
        } else {
            vec!["--port".into(), a.ssh_port.to_string()]
        };
        let block = Block {
            binary: &binary.to_string_lossy(),
            deployment: &client.base,
            identity_file: &key.to_string_lossy(),
            known_hosts: &dir.join("known_hosts").to_string_lossy(),
            extra_args: &extra,
        }
        .render();
        ssh_config::upsert(&old, &block).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    };
    if new == old {
        println!("{} is up to date.", path.display());
        return Ok(());
    }
    if a.dry_run {
        print!(
            "--- {0}\n+++ {0}\n{1}",
            path.display(),
            ssh_config::diff(&old, &new)
        );
        println!("(dry run: nothing written)");
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        relay_core::create_private_dir(dir)?;
    }
    write_keeping_mode(&path, &new)?;
    if a.remove {
        println!("Removed perigee's block from {}.", path.display());
    } else {
        println!(
            "Wrote perigee's block to {}: `ssh {HOST_PREFIX}WORKSPACE` connects to your workspaces.",
            path.display()
        );
    }
    Ok(())
}

/// The workspace name in `perigee.NAME` or `NAME`.
fn workspace_of(host: &str) -> &str {
    host.strip_prefix(HOST_PREFIX).unwrap_or(host)
}

pub(crate) async fn ssh(a: SshArgs) -> anyhow::Result<()> {
    let ws = workspace_of(&a.workspace).to_owned();
    if a.stdio {
        anyhow::ensure!(
            a.command.is_empty(),
            "--stdio carries an SSH connection for OpenSSH; it runs no command"
        );
        let o = perigee_client::Options::from_env();
        if a.port == SSH_PORT && !a.no_resume {
            return perigee_client::resume::ssh(&ws, a.port, &o, crate::stdio::streams).await;
        }
        let (rd, wr) = crate::stdio::streams();
        return perigee_client::tunnel::tunnel(&ws, a.port, &o, rd, wr).await;
    }
    // Interactive or one command: OpenSSH with perigee as its ProxyCommand.
    let dir = ssh_dir()?;
    let (key, _) = ensure_key(&dir)?;
    let binary = std::env::current_exe().context("locating the perigee binary")?;
    let proxy = format!(
        "{} ssh --stdio --port {} %h",
        ssh_config::sh_word(&binary.to_string_lossy()),
        a.port
    );
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-o").arg(format!("ProxyCommand={proxy}"));
    let known = dir.join("known_hosts");
    for (k, v) in ssh_config::client_options(&key.to_string_lossy(), &known.to_string_lossy()) {
        cmd.arg("-o").arg(format!("{k}={v}"));
    }
    let status = cmd
        .arg(format!("{HOST_PREFIX}{ws}"))
        .args(&a.command)
        .status()
        .await
        .context("running ssh (install OpenSSH's client: `apt install openssh-client`)")?;
    std::process::exit(status.code().unwrap_or(255));
}
