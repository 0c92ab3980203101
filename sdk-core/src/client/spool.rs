//! The on-disk spool: append-only segment files of checksummed records under one locked
//! directory, replayed oldest-first so events survive an outage and a restart with their ids.
//!
//! Record: `len: u32 LE | crc32(id ++ json): u32 LE | id: 16 bytes | json`, where `len` counts
//! `id ++ json`. A record whose length runs past the end of the file or whose checksum does not
//! match ends the segment's replay (a torn last write); it is counted, never fatal.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use uuid::Uuid;

use super::config::SpoolFsync;
use super::stats::Counters;
use super::Encoded;

const HEADER: usize = 8;
const ID: usize = 16;
/// Larger than any valid event (32 KiB) by far; a length above it is garbage, not a record.
const MAX_RECORD: usize = 1024 * 1024;
const LOCK_FILE: &str = "LOCK";
const SUFFIX: &str = ".spool";

#[derive(Debug, Clone, Copy)]
pub(crate) struct SpoolConfig {
    pub fsync: SpoolFsync,
    pub max_bytes: u64,
    pub segment_bytes: u64,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    records: u64,
}

#[derive(Debug)]
struct Active {
    seg: Segment,
    file: File,
    unsynced: u64,
}

/// A segment read back for delivery: it is deleted once every record is settled.
#[derive(Debug)]
struct CheckedOut {
    seg: Segment,
    remaining: u64,
}

#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    _lock: File,
    cfg: SpoolConfig,
    active: Option<Active>,
    sealed: VecDeque<Segment>,
    out: HashMap<u64, CheckedOut>,
    next_id: u64,
    counters: Arc<Counters>,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SUFFIX}"))
}

pub(crate) fn encode_record(out: &mut Vec<u8>, e: &Encoded) {
    let len = (ID + e.json.len()) as u32;
    let mut h = crc32fast::Hasher::new();
    h.update(e.id.as_bytes());
    h.update(&e.json);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(e.id.as_bytes());
    out.extend_from_slice(&e.json);
}

/// Decode the records of a segment; the count of bad records that ended it comes second.
pub(crate) fn decode_records(buf: &[u8]) -> (Vec<Encoded>, u64) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < buf.len() {
        let Some(h) = buf.get(at..at + HEADER) else {
            return (out, 1);
        };
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if !(ID..=MAX_RECORD).contains(&len) {
            return (out, 1);
        }
        let Some(body) = buf.get(at + HEADER..at + HEADER + len) else {
            return (out, 1);
        };
        if crc32fast::hash(body) != crc {
            return (out, 1);
        }
        let id = Uuid::from_slice(&body[..ID]).unwrap_or_default();
        out.push(Encoded {
            id,
            json: body[ID..].to_vec(),
        });
        at += HEADER + len;
    }
    (out, 0)
}

impl Spool {
    /// Open (creating) `dir`, take its lock, and index the segments a previous process left.
    pub(crate) fn open(dir: &Path, cfg: SpoolConfig, counters: Arc<Counters>) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))?;
        // std's file locks (Rust 1.89, the workspace's rust-version): held until shutdown, so two
        // processes never replay the same segments.
        let locked = lock.try_lock();
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "spool directory {} is locked by another client",
                        dir.display()
                    ),
                ))
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let mut ids: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(SUFFIX)?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut sealed = VecDeque::new();
        for id in &ids {
            let buf = fs::read(seg_path(dir, *id))?;
            let (recs, _) = decode_records(&buf);
            if recs.is_empty() {
                let _ = fs::remove_file(seg_path(dir, *id));
                continue;
            }
            sealed.push_back(Segment {
                id: *id,
                bytes: buf.len() as u64,
                records: recs.len() as u64,
            });
        }
        let spool = Spool {
            dir: dir.to_path_buf(),
            _lock: lock,
            cfg,
            active: None,
            sealed,
            out: HashMap::new(),
            next_id: ids.last().map_or(1, |l| l + 1),
            counters,
        };
        spool.publish();
        Ok(spool)
    }

    fn publish(&self) {
        let (mut ev, mut by) = (0, 0);
        for s in &self.sealed {
            ev += s.records;
            by += s.bytes;
        }
        for c in self.out.values() {
            ev += c.remaining;
            by += c.seg.bytes;
        }
        if let Some(a) = &self.active {
            ev += a.seg.records;
            by += a.seg.bytes;
        }
        self.counters.spool_events.store(ev, Relaxed);
        self.counters.spool_bytes.store(by, Relaxed);
    }

    fn disk_bytes(&self) -> u64 {
        self.sealed.iter().map(|s| s.bytes).sum::<u64>()
            + self.out.values().map(|c| c.seg.bytes).sum::<u64>()
            + self.active.as_ref().map_or(0, |a| a.seg.bytes)
    }

    /// The newest segment's id (active, sealed or read back for delivery), if any holds records.
    pub(crate) fn newest_segment(&self) -> Option<u64> {
        self.segment_ids().max()
    }

    /// The oldest segment's id still holding undelivered records, if any.
    pub(crate) fn oldest_segment(&self) -> Option<u64> {
        self.segment_ids().min()
    }

    fn segment_ids(&self) -> impl Iterator<Item = u64> + '_ {
        let active = self.active.as_ref().filter(|a| a.seg.records > 0);
        self.sealed
            .iter()
            .map(|s| s.id)
            .chain(self.out.keys().copied())
            .chain(active.map(|a| a.seg.id))
    }

    /// Append records (one write, then fsync per policy). Returns how many were written; the rest
    /// were dropped (spool full, or an I/O error) and counted.
    pub(crate) fn append(&mut self, recs: &[Encoded]) -> usize {
        if recs.is_empty() {
            return 0;
        }
        let mut buf = Vec::with_capacity(recs.iter().map(|r| r.json.len() + 32).sum());
        for r in recs {
            encode_record(&mut buf, r);
        }
        let len = buf.len() as u64;
        // Make room: oldest sealed segments go first, counted as dropped.
        while self.disk_bytes() + len > self.cfg.max_bytes {
            let Some(old) = self.sealed.pop_front() else {
                break;
            };
            let _ = fs::remove_file(seg_path(&self.dir, old.id));
            Counters::add(&self.counters.dropped_spool_full, old.records as usize);
            tracing::warn!(
                segment = old.id,
                events = old.records,
                "agenttally spool full: dropped the oldest segment"
            );
        }
        if self.disk_bytes() + len > self.cfg.max_bytes {
            Counters::add(&self.counters.dropped_spool_full, recs.len());
            return 0;
        }
        match self.write_active(&buf, recs.len() as u64) {
            Ok(()) => {
                Counters::add(&self.counters.spooled, recs.len());
                self.publish();
                recs.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "agenttally spool write failed");
                Counters::add(&self.counters.dropped_spool_io, recs.len());
                // The file may hold a partial record now; start a fresh segment.
                self.seal();
                0
            }
        }
    }

    fn write_active(&mut self, buf: &[u8], n: u64) -> io::Result<()> {
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.seg.bytes >= self.cfg.segment_bytes)
        {
            self.seal();
        }
        if self.active.is_none() {
            let id = self.next_id;
            self.next_id += 1;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(seg_path(&self.dir, id))?;
            self.active = Some(Active {
                seg: Segment {
                    id,
                    bytes: 0,
                    records: 0,
                },
                file,
                unsynced: 0,
            });
        }
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        a.file.write_all(buf)?;
        a.seg.bytes += buf.len() as u64;
        a.seg.records += n;
        a.unsynced += n;
        let sync = match self.cfg.fsync {
            SpoolFsync::Always => true,
            SpoolFsync::EveryN(k) => a.unsynced >= u64::from(k),
            SpoolFsync::Never => false,
        };
        if sync {
            a.file.sync_data()?;
            a.unsynced = 0;
        }
        Ok(())
    }

    /// Close the active segment so it becomes replayable.
    pub(crate) fn seal(&mut self) {
        if let Some(a) = self.active.take() {
            if a.unsynced > 0 && self.cfg.fsync != SpoolFsync::Never {
                let _ = a.file.sync_data();
            }
            if a.seg.records > 0 {
                self.sealed.push_back(a.seg);
            } else {
                let _ = fs::remove_file(seg_path(&self.dir, a.seg.id));
            }
        }
    }

    /// Read the oldest segment for delivery. `seal_active`: also take the active segment when
    /// nothing is sealed (when the collector is reachable again, there is no reason to wait).
    pub(crate) fn checkout(&mut self, seal_active: bool) -> Option<(u64, Vec<Encoded>)> {
        if self.sealed.is_empty() && seal_active {
            self.seal();
        }
        loop {
            let seg = self.sealed.pop_front()?;
            let path = seg_path(&self.dir, seg.id);
            let mut buf = Vec::with_capacity(seg.bytes as usize);
            let read = File::open(&path).and_then(|mut f| f.read_to_end(&mut buf));
            if let Err(e) = read {
                tracing::warn!(error = %e, segment = seg.id, "agenttally spool read failed");
                Counters::add(&self.counters.dropped_spool_io, seg.records as usize);
                let _ = fs::remove_file(&path);
                continue;
            }
            let (recs, bad) = decode_records(&buf);
            if bad > 0 {
                tracing::warn!(
                    segment = seg.id,
                    "agenttally spool: skipped a torn or corrupt record"
                );
                Counters::add(&self.counters.spool_corrupt, bad as usize);
            }
            if recs.is_empty() {
                let _ = fs::remove_file(&path);
                self.publish();
                continue;
            }
            let id = seg.id;
            Counters::add(&self.counters.replayed, recs.len());
            self.out.insert(
                id,
                CheckedOut {
                    remaining: recs.len() as u64,
                    seg: Segment {
                        records: recs.len() as u64,
                        ..seg
                    },
                },
            );
            self.publish();
            return Some((id, recs));
        }
    }

    /// `n` records of checked-out segment `id` are settled (delivered, rejected, re-spooled or
    /// dropped); the file is deleted when none remain.
    pub(crate) fn settle(&mut self, id: u64, n: u64) {
        if let Some(c) = self.out.get_mut(&id) {
            c.remaining = c.remaining.saturating_sub(n);
            if c.remaining == 0 {
                self.out.remove(&id);
                let _ = fs::remove_file(seg_path(&self.dir, id));
            }
        }
        self.publish();
    }

    /// Return checked-out segment `id` to the sealed ones, untouched, if none of its records was
    /// settled (so the file still holds exactly what is undelivered). Returns whether it did.
    pub(crate) fn check_in(&mut self, id: u64) -> bool {
        let Some(c) = self.out.get(&id) else {
            return false;
        };
        if c.remaining != c.seg.records {
            return false;
        }
        let Some(c) = self.out.remove(&id) else {
            return false;
        };
        // The replay counter counted these records as read back; they are on disk again.
        self.counters.replayed.fetch_sub(c.seg.records, Relaxed);
        let at = self.sealed.partition_point(|s| s.id < id);
        self.sealed.insert(at, c.seg);
        self.publish();
        true
    }

    /// Flush and fsync the active segment (at shutdown).
    pub(crate) fn sync(&mut self) {
        if let Some(a) = self.active.as_mut() {
            if self.cfg.fsync != SpoolFsync::Never {
                let _ = a.file.sync_data();
            }
            a.unsynced = 0;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg() -> SpoolConfig {
        SpoolConfig {
            fsync: SpoolFsync::Never,
            max_bytes: 1 << 20,
            segment_bytes: 64 * 1024,
        }
    }

    fn rec(i: u32) -> Encoded {
        Encoded {
            id: Uuid::now_v7(),
            json: format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(100)).into_bytes(),
        }
    }

    #[test]
    fn replay_keeps_ids_and_order_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(Counters::default());
        let recs: Vec<_> = (0..10).map(rec).collect();
        {
            let mut s = Spool::open(dir.path(), cfg(), c.clone()).unwrap();
            assert_eq!(s.append(&recs[..4]), 4);
            assert_eq!(s.append(&recs[4..]), 6);
        }
        let mut s = Spool::open(dir.path(), cfg(), c.clone()).unwrap();
        assert_eq!(c.spool_events.load(Relaxed), 10);
        let (id, got) = s.checkout(true).unwrap();
        assert_eq!(got, recs);
        s.settle(id, 10);
        assert!(s.checkout(true).is_none());
        assert_eq!(c.spool_events.load(Relaxed), 0);
    }

    #[test]
    fn torn_last_record_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(Counters::default());
        let recs: Vec<_> = (0..3).map(rec).collect();
        {
            let mut s = Spool::open(dir.path(), cfg(), c.clone()).unwrap();
            s.append(&recs);
        }
        let path = seg_path(dir.path(), 1);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
        let mut s = Spool::open(dir.path(), cfg(), c.clone()).unwrap();
        let (_, got) = s.checkout(true).unwrap();
        assert_eq!(got, recs[..2]);
        assert_eq!(c.spool_corrupt.load(Relaxed), 1);
    }

    #[test]
    fn flipped_byte_fails_the_checksum() {
        let mut buf = Vec::new();
        let r = rec(1);
        encode_record(&mut buf, &r);
        encode_record(&mut buf, &rec(2));
        let (ok, bad) = decode_records(&buf);
        assert_eq!((ok.len(), bad), (2, 0));
        buf[HEADER + ID + 3] ^= 0x20;
        let (ok, bad) = decode_records(&buf);
        assert_eq!((ok.len(), bad), (0, 1));
    }

    #[test]
    fn directory_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(Counters::default());
        let s = Spool::open(dir.path(), cfg(), c.clone()).unwrap();
        let e = Spool::open(dir.path(), cfg(), c.clone()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(s);
        Spool::open(dir.path(), cfg(), c).unwrap();
    }

    #[test]
    fn size_bound_drops_oldest_segment_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(Counters::default());
        let cfg = SpoolConfig {
            max_bytes: 128 * 1024,
            ..cfg()
        };
        let mut s = Spool::open(dir.path(), cfg, c.clone()).unwrap();
        let recs: Vec<_> = (0..2000).map(rec).collect();
        for chunk in recs.chunks(100) {
            s.append(chunk);
        }
        assert!(s.disk_bytes() <= cfg.max_bytes);
        let kept = c.spool_events.load(Relaxed);
        let dropped = c.dropped_spool_full.load(Relaxed);
        assert!(dropped > 0);
        assert_eq!(kept + dropped, 2000);
        // What is kept is the newest.
        let mut last = Vec::new();
        while let Some((id, r)) = s.checkout(true) {
            s.settle(id, r.len() as u64);
            last.extend(r);
        }
        assert_eq!(last.last().unwrap().id, recs[1999].id);
    }
}
