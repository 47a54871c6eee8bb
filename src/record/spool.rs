//! The spool: records waiting for a sink that is down, kept in order.
//!
//! With a path it is an append-only file of JSON lines on local disk, which survives a
//! restart and is replayed first by the next pipeline; without one it lives in memory
//! (unbounded, and gone when the process exits). One spool file belongs to one process.
//!
//! Appends are whole lines written with one `write` each, so a crash can leave at most one
//! partial last line; it is skipped and counted on replay. Records consumed by the replay are
//! not removed one by one: the file is truncated once everything in it has been delivered.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::Record;

/// Records in arrival order, waiting to be replayed.
#[derive(Debug)]
pub struct Spool {
    backing: Backing,
    pending: usize,
}

#[derive(Debug)]
enum Backing {
    File {
        path: PathBuf,
        append: File,
        /// Where the next unread line starts.
        read_offset: u64,
    },
    Memory(VecDeque<Record>),
}

/// Records read from the front of the spool, not yet consumed.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The records, in order.
    pub records: Vec<Record>,
    /// Lines that could not be parsed (a crash mid-write); they are dropped on consume.
    pub corrupt: usize,
    /// After `ends[i]`, records `0..=i` (and the corrupt lines before them) are consumed.
    ends: Vec<u64>,
    /// The position after the whole chunk.
    end: u64,
}

impl Spool {
    /// An in-memory spool.
    pub fn memory() -> Self {
        Self {
            backing: Backing::Memory(VecDeque::new()),
            pending: 0,
        }
    }

    /// Opens (or creates) the spool file at `path`; records left by a previous run are pending.
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut append = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        if bytes.last().is_some_and(|b| *b != b'\n') {
            // Terminate a partial line left by a crash so new lines start cleanly.
            append.write_all(b"\n")?;
            bytes.push(b'\n');
        }
        let pending = bytecount_newlines(&bytes);
        Ok(Self {
            backing: Backing::File {
                path: path.to_owned(),
                append,
                read_offset: 0,
            },
            pending,
        })
    }

    /// How many records (or unreadable lines) wait to be replayed.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether the spool keeps records across restarts.
    pub fn is_durable(&self) -> bool {
        matches!(self.backing, Backing::File { .. })
    }

    /// Adds records at the back.
    pub fn append(&mut self, records: &[Record]) -> io::Result<()> {
        match &mut self.backing {
            Backing::File { append, .. } => {
                let bytes = encode(records)?;
                let before = append.metadata()?.len();
                if let Err(err) = append.write_all(&bytes) {
                    // Never leave a partial line for the next append to glue onto.
                    let _ = append.set_len(before);
                    return Err(err);
                }
            }
            Backing::Memory(queue) => queue.extend(records.iter().cloned()),
        }
        self.pending += records.len();
        Ok(())
    }

    /// Puts records in front of everything pending: they are older than what was spooled
    /// so far. The file is rewritten (new file, fsync, rename), which is rare: it happens when
    /// the sink has just gone down.
    pub fn prepend(&mut self, records: Vec<Record>) -> io::Result<()> {
        let count = records.len();
        match &mut self.backing {
            Backing::File {
                path,
                append,
                read_offset,
            } => {
                let tmp = path.with_extension("rewrite");
                let mut out = File::create(&tmp)?;
                out.write_all(&encode(&records)?)?;
                let mut old = File::open(&*path)?;
                old.seek(SeekFrom::Start(*read_offset))?;
                io::copy(&mut old, &mut out)?;
                out.sync_all()?;
                fs::rename(&tmp, &*path)?;
                *append = OpenOptions::new().append(true).read(true).open(&*path)?;
                *read_offset = 0;
            }
            Backing::Memory(queue) => {
                for record in records.into_iter().rev() {
                    queue.push_front(record);
                }
            }
        }
        self.pending += count;
        Ok(())
    }

    /// Reads up to `max` records from the front without consuming them.
    pub fn peek(&mut self, max: usize) -> io::Result<Chunk> {
        let mut chunk = Chunk::default();
        match &mut self.backing {
            Backing::File {
                path, read_offset, ..
            } => {
                let mut file = File::open(&*path)?;
                file.seek(SeekFrom::Start(*read_offset))?;
                let mut reader = BufReader::new(file);
                let mut pos = *read_offset;
                let mut line = Vec::new();
                while chunk.records.len() < max {
                    line.clear();
                    let n = reader.read_until(b'\n', &mut line)?;
                    if n == 0 || line.last() != Some(&b'\n') {
                        break;
                    }
                    pos += n as u64;
                    match serde_json::from_slice::<Record>(&line) {
                        Ok(record) => {
                            chunk.records.push(record);
                            chunk.ends.push(pos);
                        }
                        Err(_) => chunk.corrupt += 1,
                    }
                }
                chunk.end = pos;
            }
            Backing::Memory(queue) => {
                chunk.records = queue.iter().take(max).cloned().collect();
                chunk.ends = (1..=chunk.records.len() as u64).collect();
                chunk.end = chunk.records.len() as u64;
            }
        }
        Ok(chunk)
    }

    /// Consumes the first `delivered` records of `chunk` (all of it when `delivered` is its
    /// length, corrupt lines included).
    pub fn consume(&mut self, chunk: &Chunk, delivered: usize) {
        let (pos, lines) = if delivered >= chunk.records.len() {
            (chunk.end, chunk.records.len() + chunk.corrupt)
        } else if delivered == 0 {
            return;
        } else {
            // Corrupt lines before the cut are not tracked individually; keep them pending
            // count-wise only when the whole chunk is consumed.
            (chunk.ends[delivered - 1], delivered)
        };
        match &mut self.backing {
            Backing::File { read_offset, .. } => *read_offset = pos,
            Backing::Memory(queue) => {
                queue.drain(..(pos as usize).min(queue.len()));
            }
        }
        self.pending = self.pending.saturating_sub(lines);
    }

    /// Empties the file once everything in it was consumed.
    pub fn reset_if_drained(&mut self) -> io::Result<bool> {
        if let Backing::File {
            append,
            read_offset,
            ..
        } = &mut self.backing
        {
            if *read_offset < append.metadata()?.len() {
                return Ok(false);
            }
            append.set_len(0)?;
            *read_offset = 0;
        } else if let Backing::Memory(queue) = &self.backing
            && !queue.is_empty()
        {
            return Ok(false);
        }
        self.pending = 0;
        Ok(true)
    }

    /// Flushes the file to disk (at shutdown).
    pub fn sync(&self) -> io::Result<()> {
        match &self.backing {
            Backing::File { append, .. } => append.sync_data(),
            Backing::Memory(_) => Ok(()),
        }
    }
}

fn encode(records: &[Record]) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    for record in records {
        serde_json::to_writer(&mut buf, record)?;
        buf.push(b'\n');
    }
    Ok(buf)
}

fn bytecount_newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ModelThoughtRecord, new_id};

    fn thought(n: usize) -> Record {
        Record::ModelThought(ModelThoughtRecord {
            id: new_id(),
            interception_id: new_id(),
            content: format!("thought {n}"),
            metadata: Default::default(),
            created_at: chrono::Utc::now(),
        })
    }

    #[test]
    fn a_partial_line_from_a_crash_is_skipped_and_later_appends_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let first = thought(1);
        let mut bytes = encode(std::slice::from_ref(&first)).unwrap();
        bytes.extend_from_slice(br#"{"kind":"model_thou"#);
        fs::write(&path, bytes).unwrap();

        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(spool.pending(), 2);
        let second = thought(2);
        spool.append(std::slice::from_ref(&second)).unwrap();
        let chunk = spool.peek(10).unwrap();
        assert_eq!(chunk.records, vec![first, second]);
        assert_eq!(chunk.corrupt, 1);
        spool.consume(&chunk, chunk.records.len());
        assert_eq!(spool.pending(), 0);
        assert!(spool.reset_if_drained().unwrap());
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn prepend_puts_older_records_first_in_file_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        for mut spool in [
            Spool::open(&dir.path().join("spool")).unwrap(),
            Spool::memory(),
        ] {
            let (a, b, c, d) = (thought(1), thought(2), thought(3), thought(4));
            spool.append(&[c.clone(), d.clone()]).unwrap();
            let chunk = spool.peek(1).unwrap();
            assert_eq!(chunk.records, vec![c.clone()]);
            spool.consume(&chunk, 1);
            spool.prepend(vec![a.clone(), b.clone()]).unwrap();
            assert_eq!(spool.pending(), 3);
            assert_eq!(spool.peek(10).unwrap().records, vec![a, b, d]);
        }
    }
}
