//! The fourcc of a QuickTime/MP4 file's video sample entry (`apch`,
//! `hvc1`, `AVdh`…), read from the file's boxes: the codec tag that
//! `ffprobe` shows as `codec_tag_string`, and that players such as Apple's
//! choose a decoder by. The plugin ABI's media description does not carry
//! it, and the host links no FFmpeg, so the few boxes on the way are read
//! here: `moov` → `trak` → `mdia` → (`hdlr` = `vide`) `minf` → `stbl` →
//! `stsd` → first entry (ISO/IEC 14496-12 §8.1–8.5; QuickTime File Format,
//! same layout).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// A `moov` larger than this is refused rather than read (a two-hour
/// master's sample tables are a few MB).
const MAX_MOOV_BYTES: u64 = 256 << 20;

/// Why no video sample entry could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleEntryError {
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("not a QuickTime/MP4 file (no `moov` box at the top level)")]
    NoMovie,
    #[error("the `moov` box is {0} bytes, more than the {MAX_MOOV_BYTES} read")]
    TooLarge(u64),
    #[error("malformed box structure: {0}")]
    Malformed(&'static str),
    #[error("no video track with a sample description")]
    NoVideo,
}

/// One box header within a buffer: (type, payload range).
fn boxes(buf: &[u8]) -> impl Iterator<Item = Result<([u8; 4], &[u8]), SampleEntryError>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at + 8 > buf.len() {
            return None;
        }
        let size = u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as u64;
        let kind: [u8; 4] = buf[at + 4..at + 8].try_into().expect("4 bytes");
        let (header, size) = match size {
            0 => (8u64, (buf.len() - at) as u64),
            1 => {
                let Some(b) = buf.get(at + 8..at + 16) else {
                    return Some(Err(SampleEntryError::Malformed(
                        "truncated 64-bit box size",
                    )));
                };
                (16, u64::from_be_bytes(b.try_into().expect("8 bytes")))
            }
            s => (8, s),
        };
        let end = (at as u64).checked_add(size);
        if size < header || end.is_none_or(|e| e > buf.len() as u64) {
            at = buf.len();
            return Some(Err(SampleEntryError::Malformed(
                "a box runs past its parent",
            )));
        }
        let payload = &buf[at + header as usize..at + size as usize];
        at += size as usize;
        Some(Ok((kind, payload)))
    })
}

fn child<'b>(buf: &'b [u8], kind: &[u8; 4]) -> Result<Option<&'b [u8]>, SampleEntryError> {
    for b in boxes(buf) {
        let (k, payload) = b?;
        if &k == kind {
            return Ok(Some(payload));
        }
    }
    Ok(None)
}

/// The first video track's sample entry type in a `moov` payload.
fn video_entry(moov: &[u8]) -> Result<[u8; 4], SampleEntryError> {
    for b in boxes(moov) {
        let (kind, trak) = b?;
        if &kind != b"trak" {
            continue;
        }
        let Some(mdia) = child(trak, b"mdia")? else {
            continue;
        };
        // hdlr: version/flags (4), pre_defined (4), handler_type (4).
        let handler = child(mdia, b"hdlr")?.and_then(|h| h.get(8..12));
        if handler != Some(b"vide") {
            continue;
        }
        let stsd = match child(mdia, b"minf")? {
            Some(minf) => match child(minf, b"stbl")? {
                Some(stbl) => child(stbl, b"stsd")?,
                None => None,
            },
            None => None,
        };
        // stsd: version/flags (4), entry_count (4), then entries, each a
        // box whose type is the fourcc.
        let Some(entry) = stsd.and_then(|s| s.get(8..)) else {
            continue;
        };
        if let Some(first) = boxes(entry).next() {
            return Ok(first?.0);
        }
    }
    Err(SampleEntryError::NoVideo)
}

/// The video sample entry fourcc of the QuickTime/MP4 file at `path`.
///
/// # Errors
/// The file cannot be read, is not QuickTime/MP4, or has no video track
/// with a sample description.
pub fn video_fourcc(path: &Path) -> Result<String, SampleEntryError> {
    let io = |e: std::io::Error| SampleEntryError::Io(e.to_string());
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut at = 0u64;
    // Top-level boxes are skipped by seeking: `mdat` is most of the file.
    while at + 8 <= len {
        f.seek(SeekFrom::Start(at)).map_err(io)?;
        let mut h = [0u8; 16];
        f.read_exact(&mut h[..8]).map_err(io)?;
        let size32 = u32::from_be_bytes(h[..4].try_into().expect("4 bytes")) as u64;
        let (header, size) = match size32 {
            0 => (8, len - at),
            1 => {
                f.read_exact(&mut h[8..16]).map_err(io)?;
                (
                    16,
                    u64::from_be_bytes(h[8..16].try_into().expect("8 bytes")),
                )
            }
            s => (8, s),
        };
        if size < header || at + size > len {
            return Err(SampleEntryError::Malformed(
                "a top-level box runs past the end",
            ));
        }
        if &h[4..8] == b"moov" {
            let body = size - header;
            if body > MAX_MOOV_BYTES {
                return Err(SampleEntryError::TooLarge(body));
            }
            let mut moov = vec![0u8; body as usize];
            f.read_exact(&mut moov).map_err(io)?;
            let tag = video_entry(&moov)?;
            return Ok(tag.iter().map(|&b| char::from(b)).collect());
        }
        at += size;
    }
    Err(SampleEntryError::NoMovie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(payload);
        v
    }

    fn trak(handler: &[u8; 4], entry: &[u8; 4]) -> Vec<u8> {
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        hdlr.extend_from_slice(&[0u8; 12]);
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend(bx(entry, &[0u8; 16]));
        let stbl = bx(b"stbl", &bx(b"stsd", &stsd));
        let minf = bx(b"minf", &stbl);
        let mut mdia = bx(b"hdlr", &hdlr);
        mdia.extend(minf);
        bx(b"trak", &bx(b"mdia", &mdia))
    }

    fn file(parts: &[Vec<u8>]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), parts.concat()).unwrap();
        f
    }

    #[test]
    fn finds_the_video_track_after_audio_and_a_large_mdat() {
        let mut moov = trak(b"soun", b"in24");
        moov.extend(trak(b"vide", b"apch"));
        // A 64-bit mdat before the moov, as movenc writes without faststart.
        let mut mdat = 1u32.to_be_bytes().to_vec();
        mdat.extend_from_slice(b"mdat");
        mdat.extend_from_slice(&(16u64 + 1000).to_be_bytes());
        mdat.extend(vec![0u8; 1000]);
        let f = file(&[bx(b"ftyp", b"qt  "), mdat, bx(b"moov", &moov)]);
        assert_eq!(video_fourcc(f.path()).unwrap(), "apch");
    }

    #[test]
    fn says_why_there_is_no_fourcc() {
        let f = file(&[bx(b"ftyp", b"isom"), bx(b"mdat", &[0; 10])]);
        assert_eq!(video_fourcc(f.path()), Err(SampleEntryError::NoMovie));
        let f = file(&[bx(b"moov", &trak(b"soun", b"mp4a"))]);
        assert_eq!(video_fourcc(f.path()), Err(SampleEntryError::NoVideo));
        // MXF starts with a partition pack key, not a box.
        let mut mxf = vec![0x06, 0x0e, 0x2b, 0x34, 0x02, 0x05, 0x01, 0x01];
        mxf.extend([0u8; 64]);
        let f = file(&[mxf]);
        assert!(video_fourcc(f.path()).is_err());
        let mut bad = bx(b"moov", &trak(b"vide", b"hvc1"));
        bad[3] = 200; // claims more than there is
        let f = file(&[bad]);
        assert!(matches!(
            video_fourcc(f.path()),
            Err(SampleEntryError::Malformed(_))
        ));
    }
}
