//! Frame buffers and pixel operations shared by the compositor and the
//! per-deliverable conversion.

use deliver_plugin_api::abi::{self, pix};
use deliver_plugin_api::plugin::VideoView;

/// Packed 8-bit RGBA, straight alpha: the compositor's working format in
/// manifest v1 (8-bit BT.709 sources and outputs; the f32 linear-light path
/// arrives with colour management).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgba8 {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Rgba8 {
    pub fn new(width: u32, height: u32) -> Self {
        Rgba8 {
            width,
            height,
            data: vec![0; width as usize * height as usize * 4],
        }
    }

    pub fn fill(&mut self, c: [u8; 4]) {
        for px in self.data.chunks_exact_mut(4) {
            px.copy_from_slice(&c);
        }
    }

    /// Copies a borrowed RGBA frame (with its stride) into this buffer,
    /// resizing it.
    pub fn copy_from_view(&mut self, v: &VideoView<'_>) {
        let (w, h) = (v.width as usize, v.height as usize);
        self.width = v.width;
        self.height = v.height;
        self.data.resize(w * h * 4, 0);
        let (src, stride) = v.planes[0];
        for y in 0..h {
            let s = &src[y * stride..y * stride + w * 4];
            self.data[y * w * 4..(y + 1) * w * 4].copy_from_slice(s);
        }
    }
}

/// A planar YUV frame in one of the [`pix`] formats, tightly packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Yuv {
    pub width: u32,
    pub height: u32,
    pub pix_fmt: u32,
    pub planes: Vec<Vec<u8>>,
    pub strides: Vec<usize>,
    pub color: abi::ColorTags,
}

impl Yuv {
    /// Allocates a black-less (zeroed) frame.
    ///
    /// # Panics
    /// On a format without a known layout (callers check presets first).
    pub fn new(width: u32, height: u32, pix_fmt: u32, color: abi::ColorTags) -> Self {
        let l = pix::layout(pix_fmt).expect("validated pixel format");
        let mut planes = Vec::new();
        let mut strides = Vec::new();
        for p in 0..l.planes {
            let (w, h) = plane_size(width, height, l, p);
            let stride = w * l.bytes_per_sample;
            strides.push(stride);
            planes.push(vec![0u8; stride * h]);
        }
        Yuv {
            width,
            height,
            pix_fmt,
            planes,
            strides,
            color,
        }
    }

    /// Copies a borrowed planar frame (format, size, tags) into this one,
    /// rows packed tightly, reusing the plane buffers' allocations.
    ///
    /// # Panics
    /// On a format without a known layout.
    pub fn copy_from_view(&mut self, v: &VideoView<'_>) {
        let l = pix::layout(v.pix_fmt).expect("a planar format of the ABI");
        (self.width, self.height, self.pix_fmt, self.color) =
            (v.width, v.height, v.pix_fmt, v.color);
        self.planes.resize_with(l.planes, Vec::new);
        self.strides.resize(l.planes, 0);
        for p in 0..l.planes {
            let (w, rows) = plane_size(v.width, v.height, l, p);
            let row = w * l.bytes_per_sample;
            let (src, stride) = v.planes[p];
            let dst = &mut self.planes[p];
            dst.resize(row * rows, 0);
            self.strides[p] = row;
            for (d, y) in dst.chunks_exact_mut(row.max(1)).zip(0..rows) {
                d.copy_from_slice(&src[y * stride..y * stride + row]);
            }
        }
    }

    /// Borrows this frame for an encoder.
    pub fn view(&self, pts: i64, time_base: abi::Rational, key: bool) -> VideoView<'_> {
        let mut planes: [(&[u8], usize); 4] = [(&[], 0); 4];
        for (i, p) in self.planes.iter().enumerate().take(4) {
            planes[i] = (p.as_slice(), self.strides[i]);
        }
        VideoView {
            width: self.width,
            height: self.height,
            pix_fmt: self.pix_fmt,
            planes,
            n_planes: self.planes.len(),
            pts,
            time_base,
            color: self.color,
            key,
        }
    }
}

/// Width and height in samples of plane `p`.
pub fn plane_size(width: u32, height: u32, l: pix::Layout, p: usize) -> (usize, usize) {
    if p == 0 || p == 3 {
        (width as usize, height as usize)
    } else {
        let w = (width as usize + (1 << l.chroma_shift_x) - 1) >> l.chroma_shift_x;
        let h = (height as usize + (1 << l.chroma_shift_y) - 1) >> l.chroma_shift_y;
        (w, h)
    }
}

/// Hashes the visible samples of a frame (not its padding), so that two
/// decodes of the same stream can be proven identical.
pub fn hash_view(v: &VideoView<'_>) -> u64 {
    let Some(l) = pix::layout(v.pix_fmt) else {
        return 0;
    };
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in 0..v.n_planes.min(l.planes) {
        let (w, rows) = plane_size(v.width, v.height, l, p);
        let (data, stride) = v.planes[p];
        let row_bytes = w * l.bytes_per_sample;
        for y in 0..rows {
            h.update(&data[y * stride..y * stride + row_bytes]);
        }
    }
    h.digest()
}

/// RGB → Y'CbCr coefficients for a matrix and range, as 16.16 fixed point.
struct Coeffs {
    y: [i32; 3],
    cb: [i32; 3],
    cr: [i32; 3],
    y_off: i32,
    c_off: i32,
}

fn coeffs(matrix: u32, range: u32, depth: u32) -> Coeffs {
    // H.273 matrix 9 is BT.2020 non-constant luminance; 1 and anything else BT.709.
    let (kr, kb) = if matrix == 9 {
        (0.2627, 0.0593)
    } else {
        (0.2126, 0.0722)
    };
    let kg = 1.0 - kr - kb;
    let scale = (1u32 << (depth - 8)) as f64;
    let (ys, cs, y_off, c_off) = if range == 2 {
        (255.0, 255.0, 0.0, 128.0)
    } else {
        (219.0, 224.0, 16.0, 128.0)
    };
    let f = |v: f64| (v * 65536.0 * scale / 255.0).round() as i32;
    Coeffs {
        y: [f(ys * kr), f(ys * kg), f(ys * kb)],
        cb: [
            f(-cs * kr / (2.0 * (1.0 - kb))),
            f(-cs * kg / (2.0 * (1.0 - kb))),
            f(cs * 0.5),
        ],
        cr: [
            f(cs * 0.5),
            f(-cs * kg / (2.0 * (1.0 - kr))),
            f(-cs * kb / (2.0 * (1.0 - kr))),
        ],
        y_off: (y_off * scale) as i32,
        c_off: (c_off * scale) as i32,
    }
}

/// Converts 8-bit RGBA to the frame's YUV format in integer arithmetic:
/// the converter before colour management, kept as the reference that
/// `render::convert` must match within one code for 8-bit BT.709 (chroma is
/// the mean of the co-sited block, i.e. centre siting). Formats with an alpha plane get the
/// render's alpha, full range at their depth (FFmpeg's convention for
/// alpha, whatever the colour range): `round(a · (2^bits − 1) / 255)`, so
/// the render's 8-bit value is recovered exactly. Others drop alpha.
pub fn rgba_to_yuv(src: &Rgba8, dst: &mut Yuv) {
    let l = pix::layout(dst.pix_fmt).expect("validated pixel format");
    let k = coeffs(dst.color.matrix, dst.color.range, l.bit_depth);
    if l.planes == 4 {
        alpha_plane(src, &mut dst.planes[3], l);
    }
    if dst.pix_fmt == pix::YUV420P && src.width.is_multiple_of(2) && src.height.is_multiple_of(2) {
        return rgba_to_yuv420p8(src, dst, &k);
    }
    let (w, h) = (src.width as usize, src.height as usize);
    let (sx, sy) = (l.chroma_shift_x as usize, l.chroma_shift_y as usize);
    let max = (1i32 << l.bit_depth) - 1;
    let put = |plane: &mut [u8], i: usize, v: i32| {
        let v = v.clamp(0, max);
        if l.bytes_per_sample == 1 {
            plane[i] = v as u8;
        } else {
            plane[2 * i..2 * i + 2].copy_from_slice(&(v as u16).to_le_bytes());
        }
    };
    let (cw, ch) = plane_size(src.width, src.height, l, 1);
    let (yp, rest) = dst.planes.split_at_mut(1);
    let yp = &mut yp[0];
    for y in 0..h {
        let row = &src.data[y * w * 4..(y + 1) * w * 4];
        for x in 0..w {
            let p = &row[x * 4..x * 4 + 4];
            let (r, g, b) = (p[0] as i32, p[1] as i32, p[2] as i32);
            let v = ((k.y[0] * r + k.y[1] * g + k.y[2] * b + 32768) >> 16) + k.y_off;
            put(yp, y * w + x, v);
        }
    }
    let (cbp, crp) = rest.split_at_mut(1);
    let (cbp, crp) = (&mut cbp[0], &mut crp[0]);
    for cy in 0..ch {
        for cx in 0..cw {
            let (mut r, mut g, mut b, mut n) = (0i32, 0i32, 0i32, 0i32);
            for yy in (cy << sy)..((cy + 1) << sy).min(h) {
                let row = &src.data[yy * w * 4..];
                for xx in (cx << sx)..((cx + 1) << sx).min(w) {
                    r += row[xx * 4] as i32;
                    g += row[xx * 4 + 1] as i32;
                    b += row[xx * 4 + 2] as i32;
                    n += 1;
                }
            }
            let cb = ((k.cb[0] * r + k.cb[1] * g + k.cb[2] * b) / n + 32768) >> 16;
            let cr = ((k.cr[0] * r + k.cr[1] * g + k.cr[2] * b) / n + 32768) >> 16;
            put(cbp, cy * cw + cx, cb + k.c_off);
            put(crp, cy * cw + cx, cr + k.c_off);
        }
    }
}

/// The alpha plane of a full-size 4:4:4:4 frame from straight RGBA.
fn alpha_plane(src: &Rgba8, plane: &mut [u8], l: pix::Layout) {
    let max = (1u32 << l.bit_depth) - 1;
    for (a, out) in src
        .data
        .chunks_exact(4)
        .map(|p| p[3] as u32)
        .zip(plane.chunks_exact_mut(l.bytes_per_sample))
    {
        let v = (a * max + 127) / 255;
        if l.bytes_per_sample == 1 {
            out[0] = v as u8;
        } else {
            out.copy_from_slice(&(v as u16).to_le_bytes());
        }
    }
}

/// An alpha sample at `bits` in the render's 8-bit units (the inverse of
/// [`rgba_to_yuv`]'s scaling, for any depth).
pub fn alpha_to_8bit(v: u32, bits: u32) -> u32 {
    let max = (1u32 << bits) - 1;
    (v * 255 + max / 2) / max
}

/// The hot path of web deliverables: 8-bit 4:2:0 from even-sized frames,
/// two rows at a time so that each pixel is read once. Same arithmetic as
/// the general path (the tests compare them).
fn rgba_to_yuv420p8(src: &Rgba8, dst: &mut Yuv, k: &Coeffs) {
    let w = src.width as usize;
    let cw = w / 2;
    let (yp, rest) = dst.planes.split_at_mut(1);
    let (cbp, crp) = rest.split_at_mut(1);
    let (yp, cbp, crp) = (&mut yp[0], &mut cbp[0], &mut crp[0]);
    let luma = |p: &[u8]| -> u8 {
        let v = ((k.y[0] * p[0] as i32 + k.y[1] * p[1] as i32 + k.y[2] * p[2] as i32 + 32768)
            >> 16)
            + k.y_off;
        v.clamp(0, 255) as u8
    };
    for (cy, rows) in src.data.chunks_exact(w * 8).enumerate() {
        let (r0, r1) = rows.split_at(w * 4);
        let (y0, y1) = yp[cy * 2 * w..(cy * 2 + 2) * w].split_at_mut(w);
        let cb_row = &mut cbp[cy * cw..(cy + 1) * cw];
        let cr_row = &mut crp[cy * cw..(cy + 1) * cw];
        for cx in 0..cw {
            let a = &r0[cx * 8..cx * 8 + 8];
            let b = &r1[cx * 8..cx * 8 + 8];
            y0[cx * 2] = luma(&a[0..4]);
            y0[cx * 2 + 1] = luma(&a[4..8]);
            y1[cx * 2] = luma(&b[0..4]);
            y1[cx * 2 + 1] = luma(&b[4..8]);
            let r = a[0] as i32 + a[4] as i32 + b[0] as i32 + b[4] as i32;
            let g = a[1] as i32 + a[5] as i32 + b[1] as i32 + b[5] as i32;
            let bl = a[2] as i32 + a[6] as i32 + b[2] as i32 + b[6] as i32;
            let cb = ((k.cb[0] * r + k.cb[1] * g + k.cb[2] * bl) / 4 + 32768) >> 16;
            let cr = ((k.cr[0] * r + k.cr[1] * g + k.cr[2] * bl) / 4 + 32768) >> 16;
            cb_row[cx] = (cb + k.c_off).clamp(0, 255) as u8;
            cr_row[cx] = (cr + k.c_off).clamp(0, 255) as u8;
        }
    }
}

/// Parses `#rrggbb` or `#rrggbbaa`.
pub fn parse_hex_color(s: &str) -> Option<[u8; 4]> {
    let h = s.strip_prefix('#')?;
    let byte = |i: usize| u8::from_str_radix(h.get(i..i + 2)?, 16).ok();
    match h.len() {
        6 => Some([byte(0)?, byte(2)?, byte(4)?, 255]),
        8 => Some([byte(0)?, byte(2)?, byte(4)?, byte(6)?]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt709_limited_white_black_and_grey() {
        let mut src = Rgba8::new(2, 2);
        src.fill([255, 255, 255, 255]);
        let mut dst = Yuv::new(2, 2, pix::YUV420P, abi::ColorTags::BT709_LIMITED);
        rgba_to_yuv(&src, &mut dst);
        assert_eq!(dst.planes[0], vec![235; 4]);
        assert_eq!(dst.planes[1], vec![128]);
        src.fill([0, 0, 0, 255]);
        rgba_to_yuv(&src, &mut dst);
        assert_eq!(dst.planes[0], vec![16; 4]);
        assert_eq!(dst.planes[2], vec![128]);
    }

    #[test]
    fn alpha_reaches_the_fourth_plane_and_comes_back_exactly() {
        let mut src = Rgba8::new(16, 1);
        for (x, p) in src.data.chunks_exact_mut(4).enumerate() {
            p.copy_from_slice(&[200, 100, 50, (x * 17) as u8]);
        }
        for fmt in [pix::YUVA444P10, pix::YUVA444P12] {
            let mut dst = Yuv::new(16, 1, fmt, abi::ColorTags::BT709_LIMITED);
            rgba_to_yuv(&src, &mut dst);
            let bits = pix::layout(fmt).unwrap().bit_depth;
            let a: Vec<u32> = dst.planes[3]
                .chunks_exact(2)
                .map(|s| u16::from_le_bytes([s[0], s[1]]) as u32)
                .collect();
            assert_eq!(a[0], 0);
            assert_eq!(a[15], (1 << bits) - 1, "opaque is the full code");
            for (x, v) in a.iter().enumerate() {
                assert_eq!(alpha_to_8bit(*v, bits), (x * 17) as u32);
            }
        }
        // Without an alpha plane, alpha is dropped and nothing else changes.
        let mut dst = Yuv::new(16, 1, pix::YUV444P10, abi::ColorTags::BT709_LIMITED);
        rgba_to_yuv(&src, &mut dst);
        assert_eq!(dst.planes.len(), 3);
    }

    #[test]
    fn bt709_red_matches_the_standard() {
        // BT.709 limited range: R'=1 → Y' = 16 + 219*0.2126 = 62.56, Cr = 240.
        let mut src = Rgba8::new(2, 2);
        src.fill([255, 0, 0, 255]);
        let mut dst = Yuv::new(2, 2, pix::YUV420P10, abi::ColorTags::BT709_LIMITED);
        rgba_to_yuv(&src, &mut dst);
        let y = u16::from_le_bytes([dst.planes[0][0], dst.planes[0][1]]);
        let cr = u16::from_le_bytes([dst.planes[2][0], dst.planes[2][1]]);
        assert_eq!(y, (62.56f64 * 4.0).round() as u16);
        assert_eq!(cr, 960);
    }

    #[test]
    fn fast_420_path_matches_the_general_path() {
        let mut src = Rgba8::new(64, 36);
        for (i, px) in src.data.chunks_exact_mut(4).enumerate() {
            px.copy_from_slice(&[
                (i * 7) as u8,
                (i * 13 / 3) as u8,
                (255 - i % 251) as u8,
                255,
            ]);
        }
        let mut fast = Yuv::new(64, 36, pix::YUV420P, abi::ColorTags::BT709_LIMITED);
        rgba_to_yuv(&src, &mut fast);
        // The general path, forced by an odd-width source of the same pixels.
        let mut general = Yuv::new(64, 36, pix::YUV420P, abi::ColorTags::BT709_LIMITED);
        let k = coeffs(1, 1, 8);
        let w = 64usize;
        for y in 0..36usize {
            for x in 0..w {
                let p = &src.data[(y * w + x) * 4..];
                let v =
                    ((k.y[0] * p[0] as i32 + k.y[1] * p[1] as i32 + k.y[2] * p[2] as i32 + 32768)
                        >> 16)
                        + k.y_off;
                general.planes[0][y * w + x] = v.clamp(0, 255) as u8;
            }
        }
        assert_eq!(fast.planes[0], general.planes[0]);
        // Chroma of block (3, 2) by hand.
        let (cx, cy) = (3usize, 2usize);
        let (mut r, mut g, mut b) = (0, 0, 0);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let p = &src.data[((cy * 2 + dy) * w + cx * 2 + dx) * 4..];
            r += p[0] as i32;
            g += p[1] as i32;
            b += p[2] as i32;
        }
        let cb = ((k.cb[0] * r + k.cb[1] * g + k.cb[2] * b) / 4 + 32768) >> 16;
        assert_eq!(fast.planes[1][cy * 32 + cx] as i32, cb + 128);
    }
}
