//! Opening the database (SQLite by default, PostgreSQL for several replicas) and migrating it.
//!
//! One set of SQL serves both: queries use `$N` placeholders (both drivers accept them),
//! portable functions (`string_agg`, `ON CONFLICT`) and integers for booleans. The schema
//! files are written for SQLite; [`postgres_ddl`] maps their two SQLite-only type names.

use std::path::Path;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Transaction};

/// Embedded migrations, applied in order; a version is never edited once released.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_satellites.sql")),
    (3, include_str!("../migrations/0003_orgs.sql")),
    (4, include_str!("../migrations/0004_providers.sql")),
    (5, include_str!("../migrations/0005_provider_settings.sql")),
    (6, include_str!("../migrations/0006_user_email.sql")),
    (7, include_str!("../migrations/0007_secrets.sql")),
    (8, include_str!("../migrations/0008_satellite_turn.sql")),
    (9, include_str!("../migrations/0009_ssh_keys.sql")),
    (10, include_str!("../migrations/0010_token_revocation.sql")),
    (11, include_str!("../migrations/0011_dev_urls.sql")),
    (12, include_str!("../migrations/0012_signin.sql")),
    (13, include_str!("../migrations/0013_web_sessions.sql")),
    (
        14,
        include_str!("../migrations/0014_workspace_provider_state.sql"),
    ),
    (15, include_str!("../migrations/0015_replicas.sql")),
    (
        16,
        include_str!("../migrations/0016_provider_own_account.sql"),
    ),
];

/// The database.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) backend: Backend,
}

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQL failure.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// The database URL is not usable.
    #[error("database URL: {0}")]
    Url(String),
    /// A migration failed.
    #[error("database migration {version}: {source}")]
    Migration {
        /// Version.
        version: i64,
        /// Cause.
        source: sqlx::Error,
    },
}

/// Now, in Unix seconds (as the store keeps times).
pub(crate) fn now() -> i64 {
    i64::try_from(relay_core::unix_now()).unwrap_or(i64::MAX)
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file in the data directory.
    Sqlite,
    /// A server shared by replicas.
    Postgres,
}

/// Key of the session-level advisory lock that serialises migrations between replicas.
const MIGRATION_LOCK: i64 = 0x7065_7269_6765_6501;

fn sqlite_url(path: &Path) -> String {
    // The driver percent-decodes the path and splits parameters at `?`.
    let p = path
        .display()
        .to_string()
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    format!("sqlite://{p}?mode=rwc")
}

/// The SQLite schema text with its SQLite-only type names mapped for PostgreSQL: integers are
/// 64-bit everywhere (times, counters and flags bind as `i64`), blobs are `BYTEA`.
pub(crate) fn postgres_ddl(sql: &str) -> String {
    sql.replace("INTEGER", "BIGINT").replace("BLOB", "BYTEA")
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let opts: AnyConnectOptions = sqlite_url(path).parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        // WAL is a property of the file: readers do not wait for the writer.
        sqlx::query("PRAGMA journal_mode = WAL")
            .execute(&pool)
            .await?;
        let store = Self {
            pool,
            backend: Backend::Sqlite,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to PostgreSQL at `url` (`postgres://user:pass@host:port/db`) and migrates it;
    /// replicas starting together take turns.
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Url(
                "a PostgreSQL URL starts with postgres:// or postgresql://".into(),
            ));
        }
        let opts: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        let store = Self {
            pool,
            backend: Backend::Postgres,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        let result = self.migrate_on(&mut conn).await;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        result
    }

    async fn migrate_on(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        use sqlx::Connection as _;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .execute(&mut *conn)
            .await?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await?;
            if done.is_some() {
                continue;
            }
            let ddl = match self.backend {
                Backend::Sqlite => (*sql).to_owned(),
                Backend::Postgres => postgres_ddl(sql),
            };
            let wrap = |source| StoreError::Migration {
                version: *version,
                source,
            };
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(&ddl).execute(&mut *tx).await.map_err(wrap)?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(now())
                .execute(&mut *tx)
                .await
                .map_err(wrap)?;
            tx.commit().await?;
        }
        Ok(())
    }
}

/// Takes the named row lock of the `locks` table for the rest of `tx`. Read-check-write
/// sequences that must not interleave (an allowlist removal against a workspace creation,
/// the default switch, key rotation) take the same lock first: on PostgreSQL it is a row
/// lock and every later statement of `tx` sees what the previous holder committed; on
/// SQLite the write makes `tx` the single writer at once.
pub(crate) async fn lock(
    tx: &mut Transaction<'_, sqlx::Any>,
    name: &str,
) -> Result<(), sqlx::Error> {
    let r = sqlx::query("UPDATE locks SET n = n + 1 WHERE name = $1")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    if r.rows_affected() == 0 {
        return Err(sqlx::Error::RowNotFound);
    }
    Ok(())
}

/// The pool type every store query runs on.
pub(crate) type Pool = AnyPool;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_survive_the_url() {
        assert_eq!(
            sqlite_url(Path::new("/tmp/a b/100%?#.db")),
            "sqlite:///tmp/a b/100%25%3F%23.db?mode=rwc"
        );
        assert!(postgres_ddl("x INTEGER, y BLOB").contains("x BIGINT, y BYTEA"));
    }
}

/// Stores on both backends for the crate's tests: a SQLite file and a database on a real
/// PostgreSQL server started for the test.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// A store and what keeps it alive.
    pub(crate) struct TestDb {
        pub(crate) store: Store,
        _pg: Option<testkit::Postgres>,
        dir: Option<std::path::PathBuf>,
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if let Some(d) = &self.dir {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }

    /// SQLite first, then PostgreSQL.
    pub(crate) async fn both() -> Vec<TestDb> {
        let dir =
            std::env::temp_dir().join(format!("perigee-store-{}", relay_core::token::random_id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let sqlite = Store::open_sqlite(&dir.join("db.sqlite"))
            .await
            .expect("sqlite store");
        let pg = testkit::Postgres::start();
        let postgres = Store::open_postgres(&pg.create_database())
            .await
            .expect("postgres store");
        vec![
            TestDb {
                store: sqlite,
                _pg: None,
                dir: Some(dir),
            },
            TestDb {
                store: postgres,
                _pg: Some(pg),
                dir: None,
            },
        ]
    }
}
