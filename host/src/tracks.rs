//! Mono audio tracks: a PCM programme laid out as one mono track per entry
//! of the preset's `audio.tracks` (broadcast MXF: eight mono 24-bit tracks).
//!
//! The programme is encoded once, as interleaved PCM of the mix's channels;
//! [`TrackMuxer`] cuts each of its packets into one packet per track (a
//! channel's samples, or zeros for a silent track) before the muxer sees
//! them. PCM is exact, so this is the same audio the programme encoder made;
//! nothing is encoded twice and the loudness pass's packets are cut the
//! same way.

use crate::encode::pcm_bits;
use crate::preset::Track;
use deliver_plugin_api::host::{Muxer, PacketBuf};
use deliver_plugin_api::plugin::StreamInfo;

/// A muxer whose audio stream may be laid out as mono tracks.
pub struct TrackMuxer {
    mux: Muxer,
    split: Option<Split>,
}

struct Split {
    /// The index the caller writes the programme to: the first track's.
    first: u32,
    map: Vec<Track>,
    channels: usize,
    /// Bytes of one sample of one channel.
    bytes: usize,
    scratch: Vec<u8>,
}

impl TrackMuxer {
    pub fn new(mux: Muxer) -> TrackMuxer {
        TrackMuxer { mux, split: None }
    }

    pub fn add_stream(&mut self, params: &StreamInfo) -> Result<u32, String> {
        self.mux.add_stream(params).map_err(|e| e.to_string())
    }

    /// Adds one mono stream per entry of `map` for a programme encoded as
    /// `params` (interleaved PCM); returns the index to write the
    /// programme's packets to.
    pub fn add_tracks(&mut self, params: &StreamInfo, map: &[Track]) -> Result<u32, String> {
        if self.split.is_some() {
            return Err("a deliverable has one programme to lay out as tracks".into());
        }
        let bits = pcm_bits(&params.codec)
            .filter(|b| b % 8 == 0)
            .ok_or_else(|| {
                format!(
                    "audio tracks are cut from PCM samples, but the encoder made `{}`",
                    params.codec
                )
            })?;
        let channels = params.channels.max(1) as usize;
        if let Some(Track::Channel(c)) = map
            .iter()
            .find(|t| matches!(t, Track::Channel(c) if *c as usize >= channels))
        {
            return Err(format!(
                "audio track carries channel {} but the programme has {channels}",
                c + 1
            ));
        }
        let mut mono = params.clone();
        mono.channels = 1;
        mono.bit_rate = params.bit_rate / channels as i64;
        let mut first = None;
        for _ in map {
            let i = self.add_stream(&mono)?;
            first.get_or_insert(i);
        }
        let first = first.ok_or("audio.tracks is empty")?;
        self.split = Some(Split {
            first,
            map: map.to_vec(),
            channels,
            bytes: bits as usize / 8,
            scratch: Vec::new(),
        });
        Ok(first)
    }

    pub fn write_header(&mut self) -> Result<(), String> {
        self.mux.write_header().map_err(|e| e.to_string())
    }

    pub fn finish(&mut self) -> Result<(), String> {
        self.mux.finish().map_err(|e| e.to_string())
    }

    pub fn write_packet(&mut self, stream: u32, pkt: &PacketBuf) -> Result<(), String> {
        let Some(s) = self.split.as_mut().filter(|s| s.first == stream) else {
            return self
                .mux
                .write_packet(stream, pkt)
                .map_err(|e| e.to_string());
        };
        let frame = s.bytes * s.channels;
        if !pkt.data.len().is_multiple_of(frame) {
            return Err(format!(
                "a PCM packet of {} bytes is not whole samples of {} channels × {} bytes",
                pkt.data.len(),
                s.channels,
                s.bytes
            ));
        }
        let samples = pkt.data.len() / frame;
        let mut track = PacketBuf {
            data: std::mem::take(&mut s.scratch),
            ..pkt.clone()
        };
        for (t, what) in s.map.iter().enumerate() {
            cut(
                &pkt.data,
                *what,
                s.channels,
                s.bytes,
                samples,
                &mut track.data,
            );
            let r = self.mux.write_packet(s.first + t as u32, &track);
            r.map_err(|e| e.to_string())?;
        }
        s.scratch = track.data;
        Ok(())
    }
}

/// One track's samples from interleaved PCM: channel `what`'s bytes, or
/// zeros (digital silence in every signed PCM format) for a silent track.
fn cut(data: &[u8], what: Track, channels: usize, bytes: usize, samples: usize, out: &mut Vec<u8>) {
    out.clear();
    match what {
        Track::Silent => out.resize(samples * bytes, 0),
        Track::Channel(c) => {
            let at = c as usize * bytes;
            for frame in data.chunks_exact(channels * bytes) {
                out.extend_from_slice(&frame[at..at + bytes]);
            }
        }
    }
}

/// The programme's channels from decoded audio laid out as `map`'s tracks:
/// each channel from the first track that carries it.
pub fn programme_of(samples: &[f32], map: &[Track], channels: u32, out: &mut Vec<f32>) {
    let n = map.len();
    let from: Vec<usize> = (0..channels)
        .map(|c| {
            map.iter()
                .position(|t| *t == Track::Channel(c))
                .unwrap_or(0)
        })
        .collect();
    out.clear();
    for frame in samples.chunks_exact(n) {
        out.extend(from.iter().map(|&t| frame[t]));
    }
}

/// Where decoded tracks depart from `map`: per track, the samples that are
/// not silent on a silent track, or that differ from the first track of the
/// same channel.
#[derive(Debug, Clone, Default)]
pub struct TrackAudit {
    pub wrong: Vec<u64>,
}

impl TrackAudit {
    pub fn new(tracks: usize) -> TrackAudit {
        TrackAudit {
            wrong: vec![0; tracks],
        }
    }

    pub fn add(&mut self, samples: &[f32], map: &[Track]) {
        let n = map.len();
        if n != self.wrong.len() {
            return;
        }
        let first: Vec<Option<usize>> = map
            .iter()
            .map(|t| match t {
                Track::Channel(_) => map.iter().position(|u| u == t),
                Track::Silent => None,
            })
            .collect();
        for frame in samples.chunks_exact(n) {
            for (t, what) in map.iter().enumerate() {
                let ok = match (what, first[t]) {
                    (Track::Silent, _) => frame[t] == 0.0,
                    (Track::Channel(_), Some(f)) => frame[t] == frame[f],
                    (Track::Channel(_), None) => true,
                };
                if !ok {
                    self.wrong[t] += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_interleaved_pcm_into_tracks_and_back() {
        // Two channels of 24-bit samples: L = 1,2,3 R = 4,5,6 (first byte).
        let data: Vec<u8> = [1u8, 4, 2, 5, 3, 6]
            .iter()
            .flat_map(|&b| [b, 0, 0])
            .collect();
        let mut out = Vec::new();
        cut(&data, Track::Channel(1), 2, 3, 3, &mut out);
        assert_eq!(out, [4, 0, 0, 5, 0, 0, 6, 0, 0]);
        cut(&data, Track::Silent, 2, 3, 3, &mut out);
        assert_eq!(out, [0; 9]);

        let map = [
            Track::Channel(0),
            Track::Channel(1),
            Track::Channel(0),
            Track::Silent,
        ];
        let decoded = [0.1, 0.2, 0.1, 0.0, 0.3, 0.4, 0.3, 0.0];
        let mut prog = Vec::new();
        programme_of(&decoded, &map, 2, &mut prog);
        assert_eq!(prog, [0.1, 0.2, 0.3, 0.4]);
        let mut audit = TrackAudit::new(4);
        audit.add(&decoded, &map);
        assert_eq!(audit.wrong, [0, 0, 0, 0]);
        audit.add(&[0.1, 0.2, 0.15, 0.01], &map);
        assert_eq!(audit.wrong, [0, 0, 1, 1]);
    }
}
