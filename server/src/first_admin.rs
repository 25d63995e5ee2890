//! The first admin of a new deployment.

use std::path::Path;

use provider::Store;

use crate::{ServerError, Setup as _};

/// Creates the first admin and writes its token to `<data-dir>/admin-token` when the
/// database has no user yet.
pub(crate) async fn first_admin(
    store: &Store,
    data_dir: &Path,
    access_url: &str,
    ca: Option<&Path>,
) -> Result<(), ServerError> {
    if store.user_count().await.setup("counting users")? > 0 {
        return Ok(());
    }
    let admin = match store.create_user("admin", "admin").await {
        Ok(a) => a,
        // Another replica on the same database created it first; its data dir has the token.
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            return Ok(())
        }
        Err(e) => return Err(ServerError::Setup(format!("creating the first admin: {e}"))),
    };
    let token = store
        .create_api_token(&admin.id, "first admin")
        .await
        .setup("creating the first admin's token")?;
    let path = data_dir.join("admin-token");
    relay_core::tls::write_private(&path, format!("{}\n", token.expose()).as_bytes())
        .setup(&format!("writing {}", path.display()))?;
    let ca_env = ca
        .map(|p| format!("PERIGEE_CA_CERT={} ", p.display()))
        .unwrap_or_default();
    eprintln!(
        "\nperigee: created the first admin user \"admin\".\n\
         Their API token is in {} (readable by you only). Log in with:\n\n  \
         {ca_env}perigee login {access_url} --token \"$(cat {})\"\n",
        path.display(),
        path.display()
    );
    Ok(())
}

/// `msg` with the password of `url` (if any) replaced, for errors that may quote the URL.
pub(crate) fn redact_password(msg: &str, url: &str) -> String {
    let creds = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(c, _)| c);
    match creds.and_then(|c| c.split_once(':')).map(|(_, p)| p) {
        Some(p) if !p.is_empty() => msg.replace(p, "***"),
        _ => msg.to_owned(),
    }
}
