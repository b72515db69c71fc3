//! The job journal: an embedded SQLite database under `<root>/.deliver/`
//! that records every job and every transition with its time, so that a
//! host that restarts (after a crash, a kill or a reboot) knows what it was
//! doing: jobs still in `processing/` resume, finished jobs that were not
//! yet moved are moved, and nothing is processed twice or lost.
//!
//! The folders stay the truth for where a job's files are; the journal is
//! the truth for what happened to it. Writes go through SQLite's WAL with
//! `synchronous = NORMAL`: a committed transition survives the process
//! being killed at any instant (not a power cut, which would cost the last
//! few transitions, and recovery repairs those from the folders).

use deliver_watch::{JobId, WatchRoot};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// File name of the journal in the root's state folder.
pub const FILE: &str = "journal.sqlite";

/// The schema's version, kept in `PRAGMA user_version`.
const VERSION: i64 = 2;

#[derive(Debug, thiserror::Error)]
#[error("journal {path}: {source}")]
pub struct JournalError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Claimed into `processing/`, waiting for a slot.
    Queued,
    /// Waiting for a plugin that provides what it needs (the detail says
    /// what); it starts when a plugin library that does is added.
    Waiting,
    /// Running (or was, when the host stopped).
    Running,
    /// Finished, its report written; being moved to done/ or failed/.
    Finished,
    /// In `done/`.
    Done,
    /// In `failed/`.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Waiting => "waiting",
            State::Running => "running",
            State::Finished => "finished",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "queued" => State::Queued,
            "waiting" => State::Waiting,
            "running" => State::Running,
            "finished" => State::Finished,
            "done" => State::Done,
            _ => State::Failed,
        }
    }
}

/// One job as the journal knows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    pub id: String,
    /// The file name it was dropped as.
    pub name: String,
    pub state: State,
    /// `pass`, `warn` or `fail` once finished.
    pub verdict: Option<String>,
    pub priority: i64,
    /// Times it was started (more than one: resumed after a restart).
    pub attempts: i64,
    pub created: String,
    pub updated: String,
    /// The latest detail ("cancelled", "waiting for a plugin for …").
    pub detail: Option<String>,
}

/// One transition.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub job: String,
    pub at: String,
    pub from: Option<String>,
    pub to: String,
    pub detail: Option<String>,
}

/// The journal of one watch root.
pub struct Journal {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Set when this journal's background checkpointer should stop.
    checkpointer: Option<Arc<AtomicBool>>,
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(stop) = &self.checkpointer {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// How often the background checkpointer folds the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn now() -> String {
    crate::report::now()
}

impl Journal {
    /// Opens (creating) `<root>/.deliver/journal.sqlite`.
    ///
    /// # Errors
    /// The database cannot be opened or its schema made (names the file).
    ///
    /// This is the host's own connection: SQLite's automatic checkpoint
    /// (two fsyncs, 10–30 ms here, inside whichever commit crosses the WAL
    /// threshold) is replaced by a passive checkpoint on a second
    /// connection every second, so that no job's transition pays for it.
    pub fn open(root: &WatchRoot) -> Result<Journal, JournalError> {
        let path = root.state_dir().join(FILE);
        let mut j = Self::open_path(&path)?;
        let err = |source| JournalError {
            path: path.clone(),
            source,
        };
        let background = Connection::open(&path).map_err(err)?;
        background
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        j.with(|c| c.pragma_update(None, "wal_autocheckpoint", 0))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    if let Err(e) =
                        background.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!("journal checkpoint: {e}");
                    }
                }
            });
        match spawned {
            Ok(_) => j.checkpointer = Some(stop),
            // Without the thread, SQLite checkpoints by itself again.
            Err(_) => j.with(|c| c.pragma_update(None, "wal_autocheckpoint", 1000))?,
        }
        Ok(j)
    }

    /// Opens a journal file.
    ///
    /// # Errors
    /// As [`Journal::open`].
    pub fn open_path(path: &Path) -> Result<Journal, JournalError> {
        let err = |source| JournalError {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // The schema is read and migrated in one write transaction: a host
        // and `deliver status` opening a new journal at the same moment
        // would otherwise both see version 0 (or 1) and both migrate ("duplicate
        // column name"). BEGIN IMMEDIATE waits (busy_timeout) for the other.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(err)?;
        let migrated = Self::migrate(&conn);
        conn.execute_batch(if migrated.is_ok() {
            "COMMIT"
        } else {
            "ROLLBACK"
        })
        .map_err(err)?;
        migrated.map_err(err)?;
        Ok(Journal {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            checkpointer: None,
        })
    }

    /// Brings the schema to [`VERSION`], inside the caller's transaction.
    fn migrate(conn: &Connection) -> rusqlite::Result<()> {
        let mut version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version == 0 {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS jobs (
                     id TEXT PRIMARY KEY,
                     name TEXT NOT NULL,
                     dropped_as TEXT NOT NULL,
                     claimed TEXT NOT NULL,
                     state TEXT NOT NULL,
                     verdict TEXT,
                     priority INTEGER NOT NULL DEFAULT 0,
                     attempts INTEGER NOT NULL DEFAULT 0,
                     created TEXT NOT NULL,
                     updated TEXT NOT NULL,
                     detail TEXT
                 );
                 CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
                 CREATE TABLE IF NOT EXISTS transitions (
                     seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     job TEXT NOT NULL,
                     at TEXT NOT NULL,
                     from_state TEXT,
                     to_state TEXT NOT NULL,
                     detail TEXT
                 );
                 CREATE INDEX IF NOT EXISTS transitions_job ON transitions(job);
                 CREATE TABLE IF NOT EXISTS segments (
                     job TEXT NOT NULL,
                     deliverable TEXT NOT NULL,
                     idx INTEGER NOT NULL,
                     first_frame INTEGER NOT NULL,
                     frames INTEGER NOT NULL,
                     file TEXT NOT NULL,
                     at TEXT NOT NULL,
                     PRIMARY KEY (job, deliverable, idx)
                 );
                 PRAGMA user_version = 1;",
            )?;
            version = 1;
        }
        if version == 1 {
            // Version 2: segments carry what resume needs to trust them
            // (size, checksum, the plan they were encoded for) and count
            // their encodes (more than one: work was done twice).
            conn.execute_batch(
                "ALTER TABLE segments ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
                 ALTER TABLE segments ADD COLUMN hash TEXT NOT NULL DEFAULT '';
                 ALTER TABLE segments ADD COLUMN plan_key TEXT NOT NULL DEFAULT '';
                 ALTER TABLE segments ADD COLUMN encodes INTEGER NOT NULL DEFAULT 1;
                 PRAGMA user_version = 2;",
            )?;
        } else if version != VERSION {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "schema version {version}; this host reads version {VERSION}"
            )));
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, JournalError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|source| JournalError {
            path: self.path.clone(),
            source,
        })
    }

    /// Records a newly claimed job (state `queued`). A job id seen before
    /// is left as it is (recovery re-submits known jobs).
    ///
    /// # Errors
    /// SQLite errors, naming the journal.
    pub fn claimed(
        &self,
        id: &JobId,
        dropped_as: &Path,
        claimed: &Path,
        priority: i64,
    ) -> Result<(), JournalError> {
        let name = dropped_as
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let t = now();
        self.with(|c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO jobs (id, name, dropped_as, claimed, state, priority, created, updated)
                 VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?6)",
                params![
                    id.as_str(),
                    name,
                    dropped_as.to_string_lossy(),
                    claimed.to_string_lossy(),
                    priority,
                    t
                ],
            )?;
            if n == 1 {
                tx.execute(
                    "INSERT INTO transitions (job, at, from_state, to_state, detail)
                     VALUES (?1, ?2, NULL, 'queued', 'claimed')",
                    params![id.as_str(), t],
                )?;
            }
            tx.commit()
        })
    }

    /// Moves a job to `to`, with an optional detail; `verdict` is kept
    /// once set. Starting (`running`) counts an attempt.
    ///
    /// # Errors
    /// SQLite errors, naming the journal.
    pub fn transition(
        &self,
        id: &JobId,
        to: State,
        detail: Option<&str>,
        verdict: Option<&str>,
    ) -> Result<(), JournalError> {
        let t = now();
        self.with(|c| {
            let tx = c.transaction()?;
            let from: Option<String> = tx
                .query_row(
                    "SELECT state FROM jobs WHERE id = ?1",
                    params![id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            tx.execute(
                "UPDATE jobs SET state = ?2, updated = ?3, detail = ?4,
                     verdict = COALESCE(?5, verdict),
                     attempts = attempts + (?2 = 'running')
                 WHERE id = ?1",
                params![id.as_str(), to.as_str(), t, detail, verdict],
            )?;
            tx.execute(
                "INSERT INTO transitions (job, at, from_state, to_state, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id.as_str(), t, from, to.as_str(), detail],
            )?;
            tx.commit()
        })
    }

    /// A job's row.
    ///
    /// # Errors
    /// SQLite errors, naming the journal.
    pub fn job(&self, id: &str) -> Result<Option<JobRow>, JournalError> {
        self.with(|c| {
            c.query_row(
                &format!("{SELECT_JOB} WHERE id = ?1"),
                params![id],
                row_to_job,
            )
            .optional()
        })
    }

    /// Every job, newest first (`all = false`: those not yet in done/ or
    /// failed/, and the last `recent` that are).
    ///
    /// # Errors
    /// SQLite errors, naming the journal.
    pub fn jobs(&self, recent: usize) -> Result<Vec<JobRow>, JournalError> {
        self.with(|c| {
            let mut open = c.prepare(&format!(
                "{SELECT_JOB} WHERE state NOT IN ('done', 'failed') ORDER BY created, id"
            ))?;
            let mut rows: Vec<JobRow> = open
                .query_map([], row_to_job)?
                .collect::<rusqlite::Result<_>>()?;
            let mut ended = c.prepare(&format!(
                "{SELECT_JOB} WHERE state IN ('done', 'failed') ORDER BY updated DESC, id LIMIT ?1"
            ))?;
            rows.extend(
                ended
                    .query_map(params![recent as i64], row_to_job)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            );
            Ok(rows)
        })
    }

    /// Jobs not in done/ or failed/, as (row, claimed manifest path).
    ///
    /// # Errors
    /// SQLite errors, naming the journal.
    pub fn unfinished(&self) -> Result<Vec<(JobRow, PathBuf, PathBuf)>, JournalError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {JOB_COLUMNS}, dropped_as, claimed FROM jobs
                 WHERE state NOT IN ('done', 'failed') ORDER BY created, id"
            ))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        row_to_job(r)?,
                        PathBuf::from(r.get::<_, String>(10)?),
                        PathBuf::from(r.get::<_, String>(11)?),
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    /// A job's transitions, oldest first.
    ///
    /// # Errors
    /// SQLite errors, naming the journal.
    pub fn history(&self, id: &str) -> Result<Vec<Transition>, JournalError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT job, at, from_state, to_state, detail FROM transitions
                 WHERE job = ?1 ORDER BY seq",
            )?;
            let rows = st
                .query_map(params![id], |r| {
                    Ok(Transition {
                        job: r.get(0)?,
                        at: r.get(1)?,
                        from: r.get(2)?,
                        to: r.get(3)?,
                        detail: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }

    /// How many times each job reached `state` (tests: nothing twice).
    ///
    /// # Errors
    /// SQLite errors, naming the journal.
    pub fn count_transitions(&self, to: State) -> Result<Vec<(String, i64)>, JournalError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT job, COUNT(*) FROM transitions WHERE to_state = ?1 GROUP BY job ORDER BY job",
            )?;
            let rows = st
                .query_map(params![to.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }
}

/// One finished segment of a deliverable's video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentRow {
    pub deliverable: String,
    pub idx: u64,
    pub first_frame: u64,
    pub frames: u64,
    /// The segment's file, relative to the job's folder.
    pub file: String,
    pub bytes: u64,
    /// FNV-1a 64 of the file, hex.
    pub hash: String,
    /// What it was encoded for (preset, size, format, segment length):
    /// a segment of another plan is not reused.
    pub plan_key: String,
    /// Times this segment was encoded (1 unless work was lost).
    pub encodes: u64,
    pub at: String,
}

impl Journal {
    /// Records a finished segment; recording one again (it was encoded
    /// again) replaces it and counts the encode.
    ///
    /// # Errors
    /// SQLite errors, naming the journal.
    pub fn record_segment(&self, job: &str, s: &SegmentRow) -> Result<(), JournalError> {
        let t = now();
        self.with(|c| {
            c.execute(
                "INSERT INTO segments (job, deliverable, idx, first_frame, frames, file, at, bytes, hash, plan_key, encodes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1)
                 ON CONFLICT (job, deliverable, idx) DO UPDATE SET
                     first_frame = excluded.first_frame, frames = excluded.frames,
                     file = excluded.file, at = excluded.at, bytes = excluded.bytes,
                     hash = excluded.hash, plan_key = excluded.plan_key,
                     encodes = segments.encodes + 1",
                params![
                    job,
                    s.deliverable,
                    s.idx as i64,
                    s.first_frame as i64,
                    s.frames as i64,
                    s.file,
                    t,
                    s.bytes as i64,
                    s.hash,
                    s.plan_key
                ],
            )
            .map(|_| ())
        })
    }

    /// A job's recorded segments (of one deliverable, or all), in order.
    ///
    /// # Errors
    /// SQLite errors, naming the journal.
    pub fn segments(
        &self,
        job: &str,
        deliverable: Option<&str>,
    ) -> Result<Vec<SegmentRow>, JournalError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT deliverable, idx, first_frame, frames, file, bytes, hash, plan_key, encodes, at
                 FROM segments WHERE job = ?1 AND (?2 IS NULL OR deliverable = ?2)
                 ORDER BY deliverable, idx",
            )?;
            let rows = st
                .query_map(params![job, deliverable], |r| {
                    Ok(SegmentRow {
                        deliverable: r.get(0)?,
                        idx: r.get::<_, i64>(1)? as u64,
                        first_frame: r.get::<_, i64>(2)? as u64,
                        frames: r.get::<_, i64>(3)? as u64,
                        file: r.get(4)?,
                        bytes: r.get::<_, i64>(5)? as u64,
                        hash: r.get(6)?,
                        plan_key: r.get(7)?,
                        encodes: r.get::<_, i64>(8)? as u64,
                        at: r.get(9)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
    }
}

const JOB_COLUMNS: &str =
    "id, name, state, verdict, priority, attempts, created, updated, detail, NULL";
const SELECT_JOB: &str =
    "SELECT id, name, state, verdict, priority, attempts, created, updated, detail, NULL FROM jobs";

fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        name: r.get(1)?,
        state: State::parse(&r.get::<_, String>(2)?),
        verdict: r.get(3)?,
        priority: r.get(4)?,
        attempts: r.get(5)?,
        created: r.get(6)?,
        updated: r.get(7)?,
        detail: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_recorded_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let id = JobId::parse("promo-1").unwrap();
        {
            let j = Journal::open_path(&path).unwrap();
            j.claimed(
                &id,
                Path::new("/r/incoming/promo.toml"),
                Path::new("/r/processing/promo-1/promo.toml"),
                0,
            )
            .unwrap();
            // Claimed twice (recovery): one row, one transition.
            j.claimed(
                &id,
                Path::new("/r/incoming/promo.toml"),
                Path::new("/r/processing/promo-1/promo.toml"),
                0,
            )
            .unwrap();
            j.transition(&id, State::Running, None, None).unwrap();
        }
        let j = Journal::open_path(&path).unwrap();
        j.transition(&id, State::Running, Some("resumed after a restart"), None)
            .unwrap();
        j.transition(&id, State::Finished, None, Some("pass"))
            .unwrap();
        j.transition(&id, State::Done, None, None).unwrap();
        let row = j.job("promo-1").unwrap().unwrap();
        assert_eq!(row.state, State::Done);
        assert_eq!(row.verdict.as_deref(), Some("pass"));
        assert_eq!(row.attempts, 2);
        assert_eq!(row.name, "promo.toml");
        let h = j.history("promo-1").unwrap();
        let to: Vec<_> = h.iter().map(|t| t.to.as_str()).collect();
        assert_eq!(to, ["queued", "running", "running", "finished", "done"]);
        assert_eq!(h[1].from.as_deref(), Some("queued"));
        assert!(j.unfinished().unwrap().is_empty());
        assert_eq!(
            j.count_transitions(State::Done).unwrap(),
            vec![("promo-1".to_owned(), 1)]
        );
    }

    #[test]
    fn segments_are_recorded_counted_and_survive_a_v1_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        {
            // A journal made by the first schema, segments table and all.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE segments (job TEXT NOT NULL, deliverable TEXT NOT NULL,
                     idx INTEGER NOT NULL, first_frame INTEGER NOT NULL, frames INTEGER NOT NULL,
                     file TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (job, deliverable, idx));
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let j = Journal::open_path(&path).unwrap();
        let row = |idx| SegmentRow {
            deliverable: "web".into(),
            idx,
            first_frame: idx * 250,
            frames: 250,
            file: format!(".segments/web/{idx:06}.seg"),
            bytes: 1000 + idx,
            hash: "00ff".into(),
            plan_key: "k".into(),
            encodes: 1,
            at: String::new(),
        };
        j.record_segment("job-1", &row(1)).unwrap();
        j.record_segment("job-1", &row(0)).unwrap();
        j.record_segment("job-2", &row(0)).unwrap();
        let got = j.segments("job-1", Some("web")).unwrap();
        assert_eq!(got.iter().map(|r| r.idx).collect::<Vec<_>>(), [0, 1]);
        assert_eq!((got[1].bytes, got[1].encodes), (1001, 1));
        assert!(!got[0].at.is_empty());
        // Encoded again: counted.
        j.record_segment("job-1", &row(1)).unwrap();
        assert_eq!(j.segments("job-1", None).unwrap()[1].encodes, 2);
        assert!(j.segments("job-1", Some("other")).unwrap().is_empty());
    }
}
