//! The email sender's durable record of effects: one event id per line in
//! `<data_dir>/email-sent.log`, loaded into a set at start.
//!
//! An id is appended right after its mail was handed over (SMTP accepted,
//! or `.eml` renamed into place), and the file is fdatasync'ed before the
//! batch's offsets are committed. A process crash loses nothing written
//! (the page cache survives it); an OS crash can lose ids whose offsets
//! were not committed either, so those events come again and their mails
//! go out a second time with the same `Message-ID`. A torn last line is
//! cut off on load.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::error::WorkerError;

/// File name inside the workers' data dir.
pub const FILE_NAME: &str = "email-sent.log";

/// The set of event ids whose mail went out, and its append-only file.
#[derive(Debug)]
pub struct SentLog {
    path: PathBuf,
    file: File,
    ids: HashSet<String>,
    dirty: bool,
}

impl SentLog {
    /// Opens (or creates) the log in `dir` and loads it.
    pub fn open(dir: &Path) -> Result<Self, WorkerError> {
        std::fs::create_dir_all(dir).map_err(|e| WorkerError::io(dir, e))?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| WorkerError::io(&path, e))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| WorkerError::io(&path, e))?;
        // Only complete lines count: a crash can leave a torn last one.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        let ids: HashSet<String> = complete
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let keep = text.rfind('\n').map_or(0, |end| end + 1);
        if keep < text.len() {
            // Cut the torn tail off so the next id starts on its own line.
            file.set_len(keep as u64)
                .map_err(|e| WorkerError::io(&path, e))?;
        }
        Ok(Self {
            path,
            file,
            ids,
            dirty: false,
        })
    }

    /// Whether `event_id`'s mail already went out.
    pub fn contains(&self, event_id: &str) -> bool {
        self.ids.contains(event_id)
    }

    /// Ids recorded.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no id is recorded.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Records `event_id` (written at once, made durable by [`Self::sync`]).
    pub fn record(&mut self, event_id: &str) -> Result<(), WorkerError> {
        if !self.ids.insert(event_id.to_owned()) {
            return Ok(());
        }
        let mut line = String::with_capacity(event_id.len() + 1);
        line.push_str(event_id);
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| WorkerError::io(&self.path, e))?;
        self.dirty = true;
        Ok(())
    }

    /// fdatasync of what was recorded since the last sync.
    pub fn sync(&mut self) -> Result<(), WorkerError> {
        if self.dirty {
            self.file
                .sync_data()
                .map_err(|e| WorkerError::io(&self.path, e))?;
            self.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_a_reopen_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut log = SentLog::open(dir.path()).expect("open");
            assert!(log.is_empty());
            log.record("a").expect("record");
            log.record("b").expect("record");
            log.record("a").expect("again is a no-op");
            log.sync().expect("sync");
        }
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"tor").expect("torn write");
        drop(f);
        let mut log = SentLog::open(dir.path()).expect("reopen");
        assert!(log.contains("a") && log.contains("b"));
        assert!(!log.contains("tor"));
        assert_eq!(log.len(), 2);
        log.record("c").expect("record");
        log.sync().expect("sync");
        let log = SentLog::open(dir.path()).expect("reopen");
        assert!(log.contains("c"));
        assert!(!log.contains("torc"));
        assert_eq!(log.len(), 3);
    }
}
