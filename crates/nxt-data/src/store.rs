//! The resumable grade store: one SQLite row per graded sample, written as soon as it is graded.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{DataError, Result};
use crate::grade::GradeResult;

/// A SQLite file of per-sample verdicts.
pub struct GradeStore {
    conn: Connection,
    path: PathBuf,
}

/// One stored verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredGrade {
    /// sha256 of the graded program.
    pub program_sha256: String,
    /// Did it pass.
    pub passed: bool,
    /// Full result as JSON.
    pub result_json: String,
}

impl GradeStore {
    /// The store of a samples file when none is named: `<samples>.grades.sqlite` beside it
    /// (`out/s.jsonl` -> `out/s.jsonl.grades.sqlite`).
    pub fn default_path(samples: &Path) -> PathBuf {
        let mut p = samples.as_os_str().to_os_string();
        p.push(".grades.sqlite");
        PathBuf::from(p)
    }

    /// Open (creating if needed) a store; `":memory:"` gives a throw-away one.
    pub fn open(path: &Path) -> Result<GradeStore> {
        let err = |source| DataError::Store {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS grades (
                 dataset TEXT NOT NULL,
                 task_id TEXT NOT NULL,
                 sample_no INTEGER NOT NULL,
                 program_sha256 TEXT NOT NULL,
                 passed INTEGER NOT NULL,
                 tests_passed INTEGER NOT NULL,
                 tests_total INTEGER NOT NULL,
                 reason TEXT NOT NULL,
                 result_json TEXT NOT NULL,
                 graded_at TEXT NOT NULL DEFAULT (datetime('now')),
                 PRIMARY KEY (dataset, task_id, sample_no)
             );",
        )
        .map_err(err)?;
        Ok(GradeStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DataError + '_ {
        move |source| DataError::Store {
            path: self.path.clone(),
            source,
        }
    }

    /// The stored verdict of sample `sample_no` of `task_id`, if any.
    pub fn get(
        &self,
        dataset: &str,
        task_id: &str,
        sample_no: usize,
    ) -> Result<Option<StoredGrade>> {
        self.conn
            .query_row(
                "SELECT program_sha256, passed, result_json FROM grades
                 WHERE dataset = ?1 AND task_id = ?2 AND sample_no = ?3",
                params![dataset, task_id, sample_no as i64],
                |r| {
                    Ok(StoredGrade {
                        program_sha256: r.get(0)?,
                        passed: r.get::<_, i64>(1)? != 0,
                        result_json: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// Store (or replace) a verdict; committed immediately.
    pub fn put(
        &self,
        dataset: &str,
        task_id: &str,
        sample_no: usize,
        program_sha256: &str,
        g: &GradeResult,
    ) -> Result<()> {
        let json = serde_json::to_string(g).map_err(|e| DataError::Invalid(e.to_string()))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO grades
                 (dataset, task_id, sample_no, program_sha256, passed, tests_passed, tests_total, reason, result_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    dataset,
                    task_id,
                    sample_no as i64,
                    program_sha256,
                    g.passed as i64,
                    g.tests_passed as i64,
                    g.tests_total as i64,
                    g.reason(),
                    json
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Number of stored verdicts for a dataset.
    pub fn count(&self, dataset: &str) -> Result<usize> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM grades WHERE dataset = ?1",
                params![dataset],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_store_sits_beside_its_samples_file() {
        assert_eq!(
            GradeStore::default_path(Path::new("out/s.jsonl")),
            Path::new("out/s.jsonl.grades.sqlite")
        );
    }
}
