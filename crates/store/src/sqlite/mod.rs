//! The SQLite implementation: connections, pragmas, migrations, and running work off the runtime.

mod configurations;
mod leases;
mod migrations;
mod outbox;
mod pending;
mod report;
mod sessions;
mod tenants;
mod user_links;
mod visits;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

use crate::StoreError;

/// How long a connection waits for another process's write lock before failing with `BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a checkpoint after a purge waits for readers before it is put off.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(200);
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 4;

/// All repositories on one SQLite database.
///
/// One writer connection behind a mutex (every write is a `BEGIN IMMEDIATE` transaction, so writes
/// never deadlock on lock upgrades) plus a small pool of read connections, which WAL lets read
/// while the writer writes. Every database call runs on `tokio::task::spawn_blocking`. Cloning is
/// cheap and shares the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// `None` for an in-memory database, whose other connections would see another database.
    readers: Option<ReadPool>,
    /// A purge changed rows whose old versions may still be in the write-ahead log, and no
    /// checkpoint has emptied it since.
    checkpoint_owed: std::sync::atomic::AtomicBool,
}

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.inner.readers.as_ref().map(|r| r.path.as_path());
        f.debug_struct("SqliteStore").field("path", &path).finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, sets it up and brings its schema
    /// up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        blocking(move || {
            let mut writer = Connection::open(&path)?;
            setup_writer(&mut writer)?;
            Ok(Self {
                inner: Arc::new(Inner {
                    writer: Mutex::new(writer),
                    readers: Some(ReadPool {
                        path,
                        idle: Mutex::new(Vec::new()),
                    }),
                    // A process that stopped before its checkpoint may have left one owed.
                    checkpoint_owed: std::sync::atomic::AtomicBool::new(true),
                }),
            })
        })
        .await
    }

    /// A private in-memory database, gone when the store is dropped. For tests only: it has a
    /// single connection, and none of the file's durability.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        blocking(|| {
            let mut writer = Connection::open_in_memory()?;
            setup_writer(&mut writer)?;
            Ok(Self {
                inner: Arc::new(Inner {
                    writer: Mutex::new(writer),
                    readers: None,
                    checkpoint_owed: std::sync::atomic::AtomicBool::new(false),
                }),
            })
        })
        .await
    }

    /// The schema version (the number of migrations applied).
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        self.read(|conn| Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?))
            .await
    }

    /// The schema version of the file at `path` without migrating it (0 when there is no file).
    pub(crate) async fn version_of_file(path: &Path) -> Result<u32, StoreError> {
        if !path.exists() {
            return Ok(0);
        }
        let path = path.to_owned();
        blocking(move || {
            let conn =
                Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
        })
        .await
    }

    /// Runs `work` in one `BEGIN IMMEDIATE` transaction on the writer connection, committing if it
    /// returns `Ok`.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            // A panic inside a transaction rolls it back as the transaction drops, so the
            // connection is still sound after poisoning.
            let mut conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
    }

    /// Notes that the write-ahead log holds old versions of purged rows until a checkpoint.
    pub(crate) fn owe_checkpoint(&self) {
        self.inner
            .checkpoint_owed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// When one is owed ([`Self::owe_checkpoint`]): copies the write-ahead log into the database
    /// and empties it. Waits at most `CHECKPOINT_WAIT` for readers (the writer is held
    /// meanwhile); when a reader is still in the way it stays owed, for the next call.
    pub(crate) async fn checkpoint_if_owed(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if !self.inner.checkpoint_owed.load(Ordering::SeqCst) || self.inner.readers.is_none() {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
            conn.busy_timeout(CHECKPOINT_WAIT)?;
            // (busy, frames in the log, frames checkpointed)
            let outcome = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            });
            conn.busy_timeout(BUSY_TIMEOUT)?;
            if outcome? == 0 {
                inner.checkpoint_owed.store(false, Ordering::SeqCst);
            } else {
                tracing::debug!("write-ahead log checkpoint put off: a reader is in the way");
            }
            Ok(())
        })
        .await
    }

    /// Runs `work` on a read connection.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || match &inner.readers {
            None => {
                let conn = inner.writer.lock().unwrap_or_else(PoisonError::into_inner);
                work(&conn)
            }
            Some(pool) => {
                let idle = pool
                    .idle
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .pop();
                let conn = match idle {
                    Some(conn) => conn,
                    None => open_reader(&pool.path)?,
                };
                let result = work(&conn);
                let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < MAX_IDLE_READERS {
                    idle.push(conn);
                }
                result
            }
        })
        .await
    }
}

async fn blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| StoreError::Task)?
}

/// Pragmas in the order that matters: the busy timeout first, so that even switching to WAL
/// waits for another process instead of failing; WAL before anything else writes.
fn setup_writer(conn: &mut Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if mode != "wal" && mode != "memory" {
        tracing::warn!(mode, "SQLite did not switch to WAL journal mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // What is deleted or overwritten (a purged AuditEvent) is zeroed, not left in free space.
    conn.pragma_update(None, "secure_delete", "ON")?;
    let before: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    migrations::MIGRATIONS.to_latest(conn)?;
    let after: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if after != before {
        tracing::info!(from = before, to = after, "database schema migrated");
    }
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

pub(crate) use crate::records::{from_json, from_millis, to_json, to_millis};

/// Which constraint a failed statement violated, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    Unique,
    ForeignKey,
}

pub(crate) fn violation(e: &rusqlite::Error) -> Option<(Violation, &str)> {
    match e {
        rusqlite::Error::SqliteFailure(err, message)
            if err.code == ErrorCode::ConstraintViolation =>
        {
            let message = message.as_deref().unwrap_or("");
            match err.extended_code {
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => Some((Violation::Unique, message)),
                rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                    Some((Violation::ForeignKey, message))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

impl crate::records::Columns for rusqlite::Row<'_> {
    type Error = rusqlite::Error;
    fn text(&self, index: usize) -> rusqlite::Result<String> {
        self.get(index)
    }
    fn opt_text(&self, index: usize) -> rusqlite::Result<Option<String>> {
        self.get(index)
    }
    fn int(&self, index: usize) -> rusqlite::Result<i64> {
        self.get(index)
    }
    fn opt_int(&self, index: usize) -> rusqlite::Result<Option<i64>> {
        self.get(index)
    }
}
