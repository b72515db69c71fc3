//! Segment-based encoding with resume.
//!
//! A long deliverable's video is encoded as segments of a fixed number of
//! frames, each by a fresh encoder (so each starts with a key frame and
//! references nothing before it: closed GOPs). The packets go into the
//! deliverable's file as they are made, exactly as without segments, and a
//! copy of each segment's packets is kept in a spool file under the job's
//! `.segments/` folder; once a segment is complete its spool file is synced
//! and recorded in the journal (size, checksum, the plan it was made for).
//!
//! A host killed mid-encode restarts the job: recorded segments whose spool
//! files still check out are copied into the new file packet by packet (not
//! encoded again), the rest are encoded. Audio is not segmented: it is
//! encoded whole on every run (it costs little, and a codec's priming and
//! padding then happen once, at the programme's ends). The validator decodes
//! and measures every picture of the new file either way, so the report
//! describes the file that is delivered.
//!
//! Spool file layout (little endian): the magic `DLVSEG\0\x01`, a `u32`
//! length and the encoder's stream parameters, then per packet a tag byte
//! `1`, `pts dts duration: i64`, `time_base: i32 i32`, `key: u8`,
//! `len: u32` and the data; then a tag byte `0` and the packet count as `u64`.

use crate::journal::{Journal, SegmentRow};
use deliver_plugin_api::abi;
use deliver_plugin_api::host::PacketBuf;
use deliver_plugin_api::plugin::StreamInfo;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"DLVSEG\0\x01";

/// Segment length used where none is configured.
pub const DEFAULT_SECONDS: f64 = 10.0;

/// Where finished segments are recorded (the job journal; tests may use
/// another store).
pub trait Ledger: Send + Sync {
    /// The segments recorded for a deliverable of this job.
    ///
    /// # Errors
    /// The store cannot be read.
    fn recorded(&self, deliverable: &str) -> Result<Vec<SegmentRow>, String>;
    /// Records a finished segment.
    ///
    /// # Errors
    /// The store cannot be written.
    fn record(&self, row: &SegmentRow) -> Result<(), String>;
}

/// The journal of a watch root, for one job.
pub struct JournalLedger {
    pub journal: Journal,
    pub job: String,
}

impl Ledger for JournalLedger {
    fn recorded(&self, deliverable: &str) -> Result<Vec<SegmentRow>, String> {
        self.journal
            .segments(&self.job, Some(deliverable))
            .map_err(|e| e.to_string())
    }

    fn record(&self, row: &SegmentRow) -> Result<(), String> {
        self.journal
            .record_segment(&self.job, row)
            .map_err(|e| e.to_string())
    }
}

/// How a job segments its deliverables.
#[derive(Clone)]
pub struct Segmenting {
    /// Segment length in seconds (rounded to whole frames, and up to a
    /// multiple of the preset's GOP length where it sets one).
    pub seconds: f64,
    pub ledger: Arc<dyn Ledger>,
}

/// FNV-1a, 64 bits: a checksum of a spool file (not a defence against an
/// adversary, a check that the file is the one that was recorded).
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// A writer that hashes what it writes.
struct Hashing<W> {
    inner: W,
    hash: Fnv,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s);
}

/// The stream parameters as bytes (every field: two segments can be
/// stitched only if their encoders agree on all of them).
pub fn encode_params(p: &StreamInfo) -> Vec<u8> {
    let mut o = Vec::with_capacity(96 + p.extradata.len());
    for v in [
        p.media,
        p.width,
        p.height,
        p.pix_fmt,
        p.color.primaries,
        p.color.transfer,
        p.color.matrix,
        p.color.range,
        p.frame_rate.num as u32,
        p.frame_rate.den as u32,
        p.sample_rate,
        p.channels,
        p.frame_size,
        p.initial_padding,
        p.time_base.num as u32,
        p.time_base.den as u32,
    ] {
        put_u32(&mut o, v);
    }
    o.extend_from_slice(&p.bit_rate.to_le_bytes());
    put_str(&mut o, p.codec.as_bytes());
    put_str(&mut o, p.profile.as_bytes());
    put_str(&mut o, &p.extradata);
    o
}

/// Writes one segment's packets to `<dir>/<idx>.seg` (through a
/// `.partial` file, synced and renamed when complete).
pub struct SegmentWriter {
    out: Hashing<BufWriter<File>>,
    partial: PathBuf,
    path: PathBuf,
    packets: u64,
}

impl SegmentWriter {
    /// # Errors
    /// The file cannot be created or written.
    pub fn create(dir: &Path, idx: u64, params: &StreamInfo) -> io::Result<SegmentWriter> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{idx:06}.seg"));
        let partial = deliver_watch::partial_path(&path);
        let file = File::create(&partial)?;
        let mut out = Hashing {
            inner: BufWriter::with_capacity(1 << 20, file),
            hash: Fnv::default(),
            bytes: 0,
        };
        out.write_all(MAGIC)?;
        let header = encode_params(params);
        out.write_all(&(header.len() as u32).to_le_bytes())?;
        out.write_all(&header)?;
        Ok(SegmentWriter {
            out,
            partial,
            path,
            packets: 0,
        })
    }

    /// # Errors
    /// The file cannot be written.
    pub fn write(&mut self, p: &PacketBuf) -> io::Result<()> {
        let mut head = [0u8; 1 + 8 * 3 + 4 * 2 + 1 + 4];
        head[0] = 1;
        head[1..9].copy_from_slice(&p.pts.to_le_bytes());
        head[9..17].copy_from_slice(&p.dts.to_le_bytes());
        head[17..25].copy_from_slice(&p.duration.to_le_bytes());
        head[25..29].copy_from_slice(&p.time_base.num.to_le_bytes());
        head[29..33].copy_from_slice(&p.time_base.den.to_le_bytes());
        head[33] = u8::from(p.key);
        head[34..38].copy_from_slice(&(p.data.len() as u32).to_le_bytes());
        self.out.write_all(&head)?;
        self.out.write_all(&p.data)?;
        self.packets += 1;
        Ok(())
    }

    /// Ends the file, syncs it and renames it into place; returns its path,
    /// size and checksum.
    ///
    /// # Errors
    /// The file cannot be written, synced or renamed.
    pub fn finish(mut self) -> io::Result<(PathBuf, u64, String)> {
        self.out.write_all(&[0])?;
        self.out.write_all(&self.packets.to_le_bytes())?;
        self.out.flush()?;
        let (bytes, hash) = (self.out.bytes, self.out.hash.hex());
        let file = self.out.inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.partial, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must survive a crash too.
            File::open(dir)?.sync_all()?;
        }
        Ok((self.path, bytes, hash))
    }
}

/// Reads a spool file's packets back.
pub struct SegmentReader {
    input: BufReader<File>,
    done: bool,
    path: PathBuf,
}

fn bad(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("segment file {}: {what}", path.display()),
    )
}

impl SegmentReader {
    /// Opens a spool file and returns its stream parameters (as bytes, see
    /// [`encode_params`]).
    ///
    /// # Errors
    /// The file cannot be read or is not a segment file.
    pub fn open(path: &Path) -> io::Result<(SegmentReader, Vec<u8>)> {
        let mut input = BufReader::with_capacity(1 << 20, File::open(path)?);
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad(path, "not a deliver segment file"));
        }
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > 64 << 20 {
            return Err(bad(path, "implausible header length"));
        }
        let mut header = vec![0u8; len];
        input.read_exact(&mut header)?;
        Ok((
            SegmentReader {
                input,
                done: false,
                path: path.to_owned(),
            },
            header,
        ))
    }

    /// The next packet, or `None` at the end.
    ///
    /// # Errors
    /// The file cannot be read or is truncated.
    pub fn next_packet(&mut self) -> io::Result<Option<PacketBuf>> {
        if self.done {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.input.read_exact(&mut tag)?;
        if tag[0] == 0 {
            self.done = true;
            return Ok(None);
        }
        if tag[0] != 1 {
            return Err(bad(&self.path, "bad packet tag"));
        }
        let mut head = [0u8; 8 * 3 + 4 * 2 + 1 + 4];
        self.input.read_exact(&mut head)?;
        let i64_at = |o: usize| i64::from_le_bytes(head[o..o + 8].try_into().expect("8 bytes"));
        let i32_at = |o: usize| i32::from_le_bytes(head[o..o + 4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(head[33..37].try_into().expect("4 bytes")) as usize;
        if len > 1 << 30 {
            return Err(bad(&self.path, "implausible packet length"));
        }
        let mut data = vec![0u8; len];
        self.input.read_exact(&mut data)?;
        Ok(Some(PacketBuf {
            data,
            pts: i64_at(0),
            dts: i64_at(8),
            duration: i64_at(16),
            time_base: abi::Rational::new(i32_at(24), i32_at(28)),
            key: head[32] != 0,
        }))
    }
}

/// Checks a recorded spool file against its record: size, checksum, a
/// complete packet stream, and the encoder parameters it was made with.
fn verify(path: &Path, row: &SegmentRow, params: &[u8]) -> Result<(), String> {
    let md = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if md.len() != row.bytes {
        return Err(format!(
            "{} is {} bytes, {} were recorded",
            path.display(),
            md.len(),
            row.bytes
        ));
    }
    let mut hash = Fnv::default();
    let mut f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    if hash.hex() != row.hash {
        return Err(format!(
            "{} does not match its recorded checksum",
            path.display()
        ));
    }
    let (_, header) = SegmentReader::open(path).map_err(|e| e.to_string())?;
    if header != params {
        return Err(format!(
            "{} was made by an encoder with other stream parameters",
            path.display()
        ));
    }
    Ok(())
}

/// Segmenting of one deliverable in one run.
pub struct Segments {
    pub deliverable: String,
    /// Frames per segment.
    pub length: u64,
    pub total: u64,
    pub dir: PathBuf,
    /// The job folder (segment files are recorded relative to it).
    pub job_dir: PathBuf,
    pub key: String,
    pub ledger: Arc<dyn Ledger>,
    /// Segments recorded by an earlier run and verified: reused.
    pub reuse: BTreeMap<u64, PathBuf>,
}

impl Segments {
    /// The segment plan of a deliverable: `None` when the programme fits in
    /// one segment (nothing to resume from).
    pub fn new(
        seg: &Segmenting,
        deliverable: &str,
        job_dir: &Path,
        frame_rate: f64,
        total: u64,
        gop: Option<u64>,
        key_parts: &str,
    ) -> Option<Segments> {
        let mut length = (seg.seconds * frame_rate).round().max(1.0) as u64;
        if let Some(g) = gop.filter(|&g| g > 1) {
            length = length.div_ceil(g) * g;
        }
        if total <= length {
            return None;
        }
        let mut key = Fnv::default();
        key.update(key_parts.as_bytes());
        key.update(&length.to_le_bytes());
        key.update(&total.to_le_bytes());
        Some(Segments {
            deliverable: deliverable.to_owned(),
            length,
            total,
            dir: job_dir.join(".segments").join(sanitize(deliverable)),
            job_dir: job_dir.to_owned(),
            key: key.hex(),
            ledger: seg.ledger.clone(),
            reuse: BTreeMap::new(),
        })
    }

    /// How many segments the programme has.
    pub fn count(&self) -> u64 {
        self.total.div_ceil(self.length)
    }

    /// The segment of a frame.
    pub fn of(&self, frame: u64) -> u64 {
        frame / self.length
    }

    /// First frame and frame count of segment `k`.
    pub fn range(&self, k: u64) -> (u64, u64) {
        let first = k * self.length;
        (first, self.length.min(self.total - first))
    }

    /// Loads what earlier runs recorded and keeps what still checks out
    /// against `params` (the stream parameters of this run's encoder);
    /// anything else is encoded again. Returns the reused indices.
    pub fn load(&mut self, params: &StreamInfo) -> Vec<u64> {
        let rows = match self.ledger.recorded(&self.deliverable) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read recorded segments, encoding them all: {e}");
                return Vec::new();
            }
        };
        let header = encode_params(params);
        for row in rows {
            let path = self.job_dir.join(&row.file);
            let (first, frames) = if row.idx < self.count() {
                self.range(row.idx)
            } else {
                (u64::MAX, 0)
            };
            if row.plan_key != self.key || row.first_frame != first || row.frames != frames {
                tracing::info!(
                    segment = row.idx,
                    "recorded for another plan (preset, size or segment length changed): encoding it again"
                );
                continue;
            }
            match verify(&path, &row, &header) {
                Ok(()) => {
                    self.reuse.insert(row.idx, path);
                }
                Err(e) => tracing::warn!(segment = row.idx, "not reused: {e}"),
            }
        }
        self.reuse.keys().copied().collect()
    }

    /// Records a finished segment.
    ///
    /// # Errors
    /// The ledger cannot be written.
    pub fn record(&self, k: u64, path: &Path, bytes: u64, hash: String) -> Result<(), String> {
        let (first_frame, frames) = self.range(k);
        let file = path
            .strip_prefix(&self.job_dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        self.ledger.record(&SegmentRow {
            deliverable: self.deliverable.clone(),
            idx: k,
            first_frame,
            frames,
            file,
            bytes,
            hash,
            plan_key: self.key.clone(),
            encodes: 1,
            at: String::new(),
        })
    }
}

/// A deliverable name as one safe path component.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "deliverable".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Memory(Mutex<Vec<SegmentRow>>);

    impl Ledger for Memory {
        fn recorded(&self, d: &str) -> Result<Vec<SegmentRow>, String> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.deliverable == d)
                .cloned()
                .collect())
        }
        fn record(&self, row: &SegmentRow) -> Result<(), String> {
            self.0.lock().unwrap().push(row.clone());
            Ok(())
        }
    }

    fn params() -> StreamInfo {
        StreamInfo {
            media: 1,
            codec: "h264".into(),
            width: 320,
            height: 180,
            time_base: abi::Rational::new(1, 25),
            frame_rate: abi::Rational::new(25, 1),
            extradata: vec![1, 2, 3],
            ..Default::default()
        }
    }

    fn packet(i: i64) -> PacketBuf {
        PacketBuf {
            data: vec![i as u8; 100 + i as usize],
            pts: i,
            dts: i - 2,
            duration: 1,
            time_base: abi::Rational::new(1, 25),
            key: i == 0,
        }
    }

    #[test]
    fn spool_files_round_trip_and_are_reused_only_when_intact() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Memory::default());
        let seg = Segmenting {
            seconds: 2.0,
            ledger: ledger.clone(),
        };
        let mk = || Segments::new(&seg, "web", dir.path(), 25.0, 120, Some(25), "k").unwrap();
        let s = mk();
        // 2 s at 25 fps, rounded up to whole GOPs of 25: 50 frames.
        assert_eq!((s.length, s.count(), s.range(2)), (50, 3, (100, 20)));
        for k in 0..2 {
            let mut w = SegmentWriter::create(&s.dir, k, &params()).unwrap();
            for i in 0..5 {
                w.write(&packet(i)).unwrap();
            }
            let (path, bytes, hash) = w.finish().unwrap();
            s.record(k, &path, bytes, hash).unwrap();
        }
        let (mut r, header) = SegmentReader::open(&s.dir.join("000001.seg")).unwrap();
        assert_eq!(header, encode_params(&params()));
        for i in 0..5 {
            assert_eq!(r.next_packet().unwrap(), Some(packet(i)));
        }
        assert_eq!(r.next_packet().unwrap(), None);

        let mut again = mk();
        assert_eq!(again.load(&params()), vec![0, 1]);
        // Another encoder (other headers): nothing reused.
        let mut other = params();
        other.extradata.push(4);
        assert!(mk().load(&other).is_empty());
        // A damaged file is not reused; the intact one is.
        let p = s.dir.join("000000.seg");
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 20;
        bytes[last] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        assert_eq!(mk().load(&params()), vec![1]);
        // Another plan key: nothing reused.
        let mut changed =
            Segments::new(&seg, "web", dir.path(), 25.0, 120, Some(25), "k2").unwrap();
        assert!(changed.load(&params()).is_empty());
    }

    #[test]
    fn a_programme_of_one_segment_is_not_segmented() {
        let ledger = Arc::new(Memory::default());
        let seg = Segmenting {
            seconds: 10.0,
            ledger,
        };
        assert!(Segments::new(&seg, "web", Path::new("/j"), 25.0, 250, None, "k").is_none());
        assert!(Segments::new(&seg, "web", Path::new("/j"), 25.0, 251, None, "k").is_some());
    }
}
