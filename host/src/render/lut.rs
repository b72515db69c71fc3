//! 3D LUTs: the `.cube` format (Adobe's specification, as Resolve and most
//! grading tools write it) and tetrahedral interpolation.
//!
//! A `.cube` file holds keywords (`TITLE "…"`, `LUT_3D_SIZE n`,
//! `DOMAIN_MIN r g b`, `DOMAIN_MAX r g b`, and Resolve's
//! `LUT_3D_INPUT_RANGE min max`), `#` comments and blank lines, then `n³`
//! lines of three numbers, red changing fastest. 1D LUTs (`LUT_1D_SIZE`) are
//! refused: a colour operation here is a 3D cube.
//!
//! Interpolation is tetrahedral: the lattice cell holding the input is cut
//! into six tetrahedra along its main diagonal, and the output is the
//! barycentric mix of the four corners of the one holding the input. It is
//! exact at lattice points and for any mapping that is linear inside each
//! tetrahedron, and needs four lookups instead of trilinear's eight.

use crate::render::plan::Lut3d;
use std::path::Path;

/// Largest `LUT_3D_SIZE` accepted (256³ entries, 200 MB of text: beyond
/// any real grading LUT).
const MAX_SIZE: u32 = 256;

/// Reads a `.cube` file.
///
/// # Errors
/// The file cannot be read, or is not a valid 3D `.cube` (the message
/// names `file:line` and what was wrong there).
pub fn load(path: &Path) -> Result<Lut3d, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read LUT {}: {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses the text of a `.cube` file; `name` is used in error messages.
///
/// # Errors
/// As [`load`].
pub fn parse(text: &str, name: &str) -> Result<Lut3d, String> {
    let mut size: Option<(u32, usize)> = None;
    let mut domain_min = [0.0f32; 3];
    let mut domain_max = [1.0f32; 3];
    let mut data: Vec<[f32; 3]> = Vec::new();
    let mut first_data_line = 0;
    let err = |line: usize, msg: String| format!("{name}:{line}: {msg}");
    let numbers = |line: usize, words: &[&str], n: usize, what: &str| -> Result<Vec<f32>, String> {
        if words.len() != n {
            return Err(err(
                line,
                format!("{what} takes {n} numbers, found {}", words.len()),
            ));
        }
        words
            .iter()
            .map(|w| {
                w.parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| err(line, format!("{what}: `{w}` is not a number")))
            })
            .collect()
    };
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let words: Vec<&str> = content.split_whitespace().collect();
        let key = words[0];
        let starts_numeric = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'));
        if starts_numeric {
            if size.is_none() {
                return Err(err(
                    line,
                    "data before LUT_3D_SIZE (a 3D .cube declares its size first)".into(),
                ));
            }
            if data.is_empty() {
                first_data_line = line;
            }
            let v = numbers(line, &words, 3, "a LUT entry")?;
            data.push([v[0], v[1], v[2]]);
            continue;
        }
        if !data.is_empty() {
            return Err(err(
                line,
                format!("keyword `{key}` after the LUT data started (line {first_data_line})"),
            ));
        }
        match key {
            "TITLE" => {}
            "LUT_1D_SIZE" => {
                return Err(err(
                    line,
                    "a 1D LUT (LUT_1D_SIZE); only 3D LUTs (LUT_3D_SIZE) are supported".into(),
                ))
            }
            "LUT_3D_SIZE" => {
                if size.is_some() {
                    return Err(err(line, "LUT_3D_SIZE given twice".into()));
                }
                let n = match words.as_slice() {
                    [_, n] => n.parse::<u32>().ok(),
                    _ => None,
                }
                .filter(|n| (2..=MAX_SIZE).contains(n))
                .ok_or_else(|| {
                    err(
                        line,
                        format!(
                            "LUT_3D_SIZE `{}`: expected one whole number from 2 to {MAX_SIZE}",
                            words[1..].join(" ")
                        ),
                    )
                })?;
                size = Some((n, line));
            }
            "DOMAIN_MIN" => {
                let v = numbers(line, &words[1..], 3, "DOMAIN_MIN")?;
                domain_min = [v[0], v[1], v[2]];
            }
            "DOMAIN_MAX" => {
                let v = numbers(line, &words[1..], 3, "DOMAIN_MAX")?;
                domain_max = [v[0], v[1], v[2]];
            }
            "LUT_3D_INPUT_RANGE" => {
                let v = numbers(line, &words[1..], 2, "LUT_3D_INPUT_RANGE")?;
                domain_min = [v[0]; 3];
                domain_max = [v[1]; 3];
            }
            other => {
                return Err(err(
                    line,
                    format!(
                        "unknown keyword `{other}` (a 3D .cube has TITLE, LUT_3D_SIZE, DOMAIN_MIN, DOMAIN_MAX, LUT_3D_INPUT_RANGE, then data)"
                    ),
                ))
            }
        }
    }
    let Some((n, size_line)) = size else {
        return Err(format!("{name}: no LUT_3D_SIZE: not a 3D .cube LUT"));
    };
    let want = (n as usize).pow(3);
    if data.len() != want {
        return Err(err(
            size_line,
            format!(
                "LUT_3D_SIZE {n} needs {want} entries ({n}³), the file has {}",
                data.len()
            ),
        ));
    }
    for c in 0..3 {
        if domain_max[c] <= domain_min[c] {
            return Err(format!(
                "{name}: DOMAIN_MAX ({:?}) must exceed DOMAIN_MIN ({:?}) in every channel",
                domain_max, domain_min
            ));
        }
    }
    Ok(Lut3d {
        size: n,
        domain_min,
        domain_max,
        data,
    })
}

impl Lut3d {
    /// A LUT of `size³` entries sampling `f` on `[0, 1]³` (tests, and LUTs
    /// made from formulas).
    pub fn from_fn(size: u32, f: impl Fn([f32; 3]) -> [f32; 3]) -> Lut3d {
        let n = size as usize;
        let s = (size - 1) as f32;
        let mut data = Vec::with_capacity(n * n * n);
        for b in 0..n {
            for g in 0..n {
                for r in 0..n {
                    data.push(f([r as f32 / s, g as f32 / s, b as f32 / s]));
                }
            }
        }
        Lut3d {
            size,
            domain_min: [0.0; 3],
            domain_max: [1.0; 3],
            data,
        }
    }

    /// Maps one colour through the LUT (tetrahedral interpolation); inputs
    /// outside the domain are clamped to it. The same arithmetic as
    /// [`PreparedLut::apply`], so the same bits; that one is the fast one.
    ///
    /// # Panics
    /// When `data` does not hold `size³` entries or `size < 2` (`parse` and
    /// `from_fn` never make such a LUT).
    #[inline]
    pub fn apply(&self, rgb: [f32; 3]) -> [f32; 3] {
        let n = self.size as usize;
        // Checked once here so that the four lookups below need no checks.
        assert!(n >= 2 && self.data.len() == n * n * n, "a {n}³ LUT");
        let cell = Cell::new(rgb, self.domain_min, scales(self), n);
        let at = |o: usize| {
            debug_assert!(cell.base + o < self.data.len());
            // SAFETY: `Cell::new` keeps each index at most n − 2 and the
            // offsets are at most 1 + n + n², so `base + o` ≤
            // (n − 1)(1 + n + n²) = n³ − 1, and the assert above holds
            // `data.len() == n³`.
            let c = unsafe { *self.data.get_unchecked(cell.base + o) };
            [c[0], c[1], c[2], 0.0]
        };
        let (o1, o2) = cell.offsets(n);
        cell.mix(at(0), at(o1), at(o2), at(1 + n + n * n))
    }

    /// This LUT laid out for [`PreparedLut::apply`].
    ///
    /// # Panics
    /// As [`Lut3d::apply`].
    pub fn prepare(&self) -> PreparedLut {
        let n = self.size as usize;
        assert!(n >= 2 && self.data.len() == n * n * n, "a {n}³ LUT");
        PreparedLut {
            n,
            min: self.domain_min,
            scale: scales(self),
            offsets: std::array::from_fn(|case| case_offsets(case, n)),
            lane_offsets: [
                std::array::from_fn(|case| case_offsets(case, n).0 as i32),
                std::array::from_fn(|case| case_offsets(case, n).1 as i32),
            ],
            data: self.data.iter().map(|c| [c[0], c[1], c[2], 0.0]).collect(),
        }
    }
}

/// Per channel, lattice steps per unit of input: `(size − 1) / (max −
/// min)`.
fn scales(l: &Lut3d) -> [f32; 3] {
    let top = (l.size - 1) as f32;
    std::array::from_fn(|c| top / (l.domain_max[c] - l.domain_min[c]))
}

/// Axis steps of (largest, second) for each outcome of (fr > fg, fg > fb,
/// fr > fb), bit 0 first.
const ORDER: [(u8, u8); 8] = [
    (2, 1), // fr ≤ fg ≤ fb
    (2, 0), // fb ≥ fr > fg
    (1, 2), // fg > fb ≥ fr
    (0, 1), // fr > fg > fb but fr ≤ fb: impossible
    (2, 1), // fr ≤ fg, fg ≤ fb, fr > fb: impossible
    (0, 2), // fr > fb ≥ fg
    (1, 0), // fg ≥ fr > fb
    (0, 1), // fr > fg > fb
];

/// Offsets in an `n`³ lattice of the second and third corners of the
/// tetrahedron of [`ORDER`] case `case`: one step along its largest axis,
/// then along its second too.
#[inline(always)]
fn case_offsets(case: usize, n: usize) -> (usize, usize) {
    let step = [1, n, n * n];
    let (a1, a2) = ORDER[case];
    let o1 = step[a1 as usize];
    (o1, o1 + step[a2 as usize])
}

/// A [`Lut3d`] laid out for lookups in pixel loops: the domain's scale per
/// channel and the tetrahedra's corner offsets worked out once, entries
/// padded to four floats (one aligned vector load each). Same results as
/// [`Lut3d::apply`], bit for bit.
#[derive(Debug, Clone)]
pub struct PreparedLut {
    pub(crate) n: usize,
    pub(crate) min: [f32; 3],
    pub(crate) scale: [f32; 3],
    /// Offsets of the second and third corners for each [`ORDER`] case.
    pub(crate) offsets: [(usize, usize); 8],
    /// The same offsets as two rows of eight `i32` (second corners, then
    /// third), for the vector kernel's lane permutes.
    pub(crate) lane_offsets: [[i32; 8]; 2],
    /// `n³` entries (`prepare` checks), the fourth float 0.
    pub(crate) data: Vec<[f32; 4]>,
}

impl PreparedLut {
    /// [`Lut3d::apply`].
    #[inline(always)]
    pub fn apply(&self, rgb: [f32; 3]) -> [f32; 3] {
        let n = self.n;
        let cell = Cell::new(rgb, self.min, self.scale, n);
        let at = |o: usize| {
            debug_assert!(cell.base + o < self.data.len());
            // SAFETY: as in `Lut3d::apply`; `prepare` (the only maker of a
            // `PreparedLut`) checked `data.len() == n³`, and `offsets` hold
            // at most `1 + n + n²`.
            unsafe { *self.data.get_unchecked(cell.base + o) }
        };
        let (o1, o2) = self.offsets[cell.case];
        cell.mix(at(0), at(o1), at(o2), at(1 + n + n * n))
    }
}

/// Where a colour falls in the lattice: its cell, its tetrahedron, and the
/// corners' weights.
struct Cell {
    /// Index of the cell's first corner.
    base: usize,
    /// The [`ORDER`] case.
    case: usize,
    /// Weights of the corners: first, largest axis step, both, last.
    w: [f32; 4],
}

impl Cell {
    #[inline(always)]
    fn new(rgb: [f32; 3], min: [f32; 3], scale: [f32; 3], n: usize) -> Cell {
        let top = (n - 1) as f32;
        let mut idx = [0usize; 3];
        let mut frac = [0f32; 3];
        for c in 0..3 {
            let x = (rgb[c] - min[c]) * scale[c];
            // Clamped by comparisons: NaN ends as 0, a defined corner with
            // a fraction of 0.
            let x = if x > 0.0 {
                if x < top {
                    x
                } else {
                    top
                }
            } else {
                0.0
            };
            // `x` is in [0, n − 1] with n ≤ 256: exact in `i32`.
            let i = (x as i32 as usize).min(n - 2);
            idx[c] = i;
            frac[c] = x - i as f32;
        }
        let (fr, fg, fb) = (frac[0], frac[1], frac[2]);
        // The tetrahedron: the corners one step along the axis of the
        // largest fraction, then along the second largest too; weights
        // from the sorted fractions. Picked without branches (which
        // mispredict on pictures); at ties either choice gives the same
        // result, as the corner between the tied axes gets weight 0.
        let hi = fr.max(fg).max(fb);
        let lo = fr.min(fg).min(fb);
        let mid = fr.min(fg).max(fr.max(fg).min(fb));
        Cell {
            base: idx[0] + idx[1] * n + idx[2] * n * n,
            case: usize::from(fr > fg) | usize::from(fg > fb) << 1 | usize::from(fr > fb) << 2,
            w: [1.0 - hi, hi - mid, mid - lo, lo],
        }
    }

    /// Offsets of the second and third corners.
    #[inline(always)]
    fn offsets(&self, n: usize) -> (usize, usize) {
        case_offsets(self.case, n)
    }

    /// The weighted sum of the four corners (their fourth floats ignored).
    #[inline(always)]
    fn mix(&self, c0: [f32; 4], c1: [f32; 4], c2: [f32; 4], c3: [f32; 4]) -> [f32; 3] {
        let w = self.w;
        [
            w[0] * c0[0] + w[1] * c1[0] + w[2] * c2[0] + w[3] * c3[0],
            w[0] * c0[1] + w[1] * c1[1] + w[2] * c2[1] + w[3] * c3[1],
            w[0] * c0[2] + w[1] * c1[2] + w[2] * c2[2] + w[3] * c3[2],
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cube_text(l: &Lut3d) -> String {
        let mut s = format!("TITLE \"test\"\n# a comment\n\nLUT_3D_SIZE {}\n", l.size);
        for c in &l.data {
            s.push_str(&format!("{} {} {}\n", c[0], c[1], c[2]));
        }
        s
    }

    fn close(a: [f32; 3], b: [f32; 3], tol: f32) -> bool {
        (0..3).all(|c| (a[c] - b[c]).abs() <= tol)
    }

    /// A deterministic sweep of colours inside the unit cube.
    fn sweep() -> impl Iterator<Item = [f32; 3]> {
        (0..2000u32).map(|i| {
            let h = |k: u32| {
                ((i.wrapping_mul(2_654_435_761).wrapping_add(k * 40_503)) % 10_007) as f32
                    / 10_006.0
            };
            [h(1), h(2), h(3)]
        })
    }

    /// Tetrahedral interpolation by the six-case analysis, written out (the
    /// branchless selection in `apply` must give the same bits).
    fn tetra_by_cases(l: &Lut3d, rgb: [f32; 3]) -> [f32; 3] {
        let n = l.size as usize;
        let top = (n - 1) as f32;
        let mut idx = [0usize; 3];
        let mut frac = [0f32; 3];
        for c in 0..3 {
            let scale = top / (l.domain_max[c] - l.domain_min[c]);
            let x = ((rgb[c] - l.domain_min[c]) * scale).clamp(0.0, top);
            let i = (x as usize).min(n - 2);
            idx[c] = i;
            frac[c] = if x.is_nan() { 0.0 } else { x - i as f32 };
        }
        let (fr, fg, fb) = (frac[0], frac[1], frac[2]);
        let base = idx[0] + idx[1] * n + idx[2] * n * n;
        let (dr, dg, db) = (1, n, n * n);
        let at = |o: usize| l.data[base + o];
        let (c000, c111) = (at(0), at(dr + dg + db));
        let (c1, c2, w) = if fr > fg {
            if fg > fb {
                (at(dr), at(dr + dg), [1.0 - fr, fr - fg, fg - fb, fb])
            } else if fr > fb {
                (at(dr), at(dr + db), [1.0 - fr, fr - fb, fb - fg, fg])
            } else {
                (at(db), at(dr + db), [1.0 - fb, fb - fr, fr - fg, fg])
            }
        } else if fb > fg {
            (at(db), at(dg + db), [1.0 - fb, fb - fg, fg - fr, fr])
        } else if fb > fr {
            (at(dg), at(dg + db), [1.0 - fg, fg - fb, fb - fr, fr])
        } else {
            (at(dg), at(dr + dg), [1.0 - fg, fg - fr, fr - fb, fb])
        };
        std::array::from_fn(|c| w[0] * c000[c] + w[1] * c1[c] + w[2] * c2[c] + w[3] * c111[c])
    }

    #[test]
    fn branchless_selection_matches_the_six_cases_bit_for_bit() {
        let l = Lut3d::from_fn(9, |[r, g, b]| {
            [
                r * r * 0.9 + b * 0.1,
                (g * 3.0).sin() * 0.5 + 0.5,
                r * g + b * b * 0.3,
            ]
        });
        // Random colours, and colours on lattice planes and with tied
        // fractions (every ordering, including equal pairs and triples).
        let steps = [0.0f32, 0.03, 0.0625, 0.1, 0.125, 0.5, 0.97, 1.0];
        let mut ties = Vec::new();
        for r in steps {
            for g in steps {
                for b in steps {
                    ties.push([r, g, b]);
                }
            }
        }
        for c in sweep().chain(ties).chain([[-0.5, 2.0, f32::NAN]]) {
            let (a, b) = (l.apply(c), tetra_by_cases(&l, c));
            assert_eq!(
                a.map(f32::to_bits),
                b.map(f32::to_bits),
                "{c:?}: {a:?} vs {b:?}"
            );
        }
    }

    #[test]
    fn prepared_lut_gives_the_same_bits() {
        let f = |[r, g, b]: [f32; 3]| [r * r * 0.9 + b * 0.1, (g * 3.0).sin(), r * g + b * b];
        let unit = Lut3d::from_fn(9, f);
        // A domain that is not [0, 1], and not the same in every channel.
        let mut text =
            String::from("LUT_3D_SIZE 5\nDOMAIN_MIN -0.1 0 0.25\nDOMAIN_MAX 1.2 2 0.75\n");
        for c in Lut3d::from_fn(5, f).data {
            text.push_str(&format!("{} {} {}\n", c[0], c[1], c[2]));
        }
        let wide = parse(&text, "wide.cube").unwrap();
        let odd = [
            [-0.5, 2.0, f32::NAN],
            [f32::INFINITY, -0.0, 1.0],
            [0.0; 3],
            [1.0; 3],
        ];
        for l in [unit, wide] {
            let p = l.prepare();
            for c in sweep().chain(odd) {
                let (a, b) = (l.apply(c), p.apply(c));
                assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits), "{c:?}");
            }
        }
    }

    #[test]
    fn identity_lut_changes_nothing() {
        for size in [2, 17, 33] {
            let l = parse(&cube_text(&Lut3d::from_fn(size, |c| c)), "id.cube").unwrap();
            for c in sweep() {
                let o = l.apply(c);
                assert!(close(o, c, 1e-6), "size {size}: {c:?} → {o:?}");
            }
        }
    }

    #[test]
    fn channel_swap_and_matrix_luts_map_known_colours() {
        let swap = parse(
            &cube_text(&Lut3d::from_fn(2, |[r, g, b]| [b, r, g])),
            "swap.cube",
        )
        .unwrap();
        assert!(close(swap.apply([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], 1e-6));
        assert!(close(swap.apply([0.2, 0.5, 0.9]), [0.9, 0.2, 0.5], 1e-6));
        // A matrix (BT.709 luma into every channel plus a tint): linear, so
        // tetrahedral interpolation on any lattice reproduces it.
        let m = |[r, g, b]: [f32; 3]| {
            [
                0.2126 * r + 0.7152 * g + 0.0722 * b,
                0.5 * r + 0.25 * g + 0.25 * b,
                0.1 * r + 0.1 * g + 0.8 * b,
            ]
        };
        let l = parse(&cube_text(&Lut3d::from_fn(17, m)), "matrix.cube").unwrap();
        for c in sweep() {
            assert!(close(l.apply(c), m(c), 1e-3), "{c:?}");
        }
        // 75 % yellow through the matrix.
        assert!(close(
            l.apply([0.75, 0.75, 0.0]),
            [0.69585, 0.5625, 0.15],
            1e-3
        ));
    }

    #[test]
    fn tetrahedral_is_exact_at_lattice_points_and_on_piecewise_linear_maps() {
        // A non-linear function: exact at lattice points only.
        let f = |[r, g, b]: [f32; 3]| [r * r, (g * 3.0).sin(), r * b + g];
        let n = 9u32;
        let l = Lut3d::from_fn(n, f);
        let s = (n - 1) as f32;
        for b in 0..n {
            for g in 0..n {
                for r in 0..n {
                    let c = [r as f32 / s, g as f32 / s, b as f32 / s];
                    assert!(close(l.apply(c), f(c), 1e-6), "{c:?}");
                }
            }
        }
        // max(r, g, b) and the sorted-component map are linear inside each
        // of the six tetrahedra (r ≥ g ≥ b and its permutations) of every
        // cell: tetrahedral interpolation reproduces them, trilinear would
        // not.
        let piecewise = |[r, g, b]: [f32; 3]| {
            let hi = r.max(g).max(b);
            let lo = r.min(g).min(b);
            [hi, lo, r + g + b - hi - lo]
        };
        let l = Lut3d::from_fn(2, piecewise);
        for c in sweep() {
            assert!(
                close(l.apply(c), piecewise(c), 1e-5),
                "{c:?} → {:?}",
                l.apply(c)
            );
        }
    }

    #[test]
    fn domain_is_honoured_and_inputs_outside_clamp() {
        let mut text = String::from("LUT_3D_SIZE 2\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 2 2 2\n");
        for c in Lut3d::from_fn(2, |c| c).data {
            text.push_str(&format!("{} {} {}\n", c[0], c[1], c[2]));
        }
        let l = parse(&text, "d.cube").unwrap();
        assert!(close(l.apply([1.0, 0.5, 2.0]), [0.5, 0.25, 1.0], 1e-6));
        assert!(close(l.apply([-1.0, 3.0, 0.0]), [0.0, 1.0, 0.0], 1e-6));
    }

    #[test]
    fn bad_files_are_refused_with_file_and_line() {
        let e = parse("LUT_1D_SIZE 4\n0 0 0\n", "one.cube").unwrap_err();
        assert!(e.starts_with("one.cube:1:") && e.contains("1D"), "{e}");
        let e = parse("TITLE \"x\"\nLUT_3D_SIZE 2\n0 0 0\n1 1 1\n", "short.cube").unwrap_err();
        assert!(
            e.starts_with("short.cube:2:") && e.contains("needs 8"),
            "{e}"
        );
        let mut text = String::from("LUT_3D_SIZE 2\n");
        for _ in 0..7 {
            text.push_str("0 0 0\n");
        }
        text.push_str("0 zero 0\n");
        let e = parse(&text, "nan.cube").unwrap_err();
        assert!(e.starts_with("nan.cube:9:") && e.contains("`zero`"), "{e}");
        let e = parse("LUT_3D_SIZE 2\n0 0\n", "two.cube").unwrap_err();
        assert!(e.starts_with("two.cube:2:"), "{e}");
        let e = parse("LUT_3D_SIZE 1\n", "size.cube").unwrap_err();
        assert!(e.starts_with("size.cube:1:"), "{e}");
        let e = parse("LUT_3D_SIZE 2\nGAMMA 2\n", "kw.cube").unwrap_err();
        assert!(e.starts_with("kw.cube:2:") && e.contains("GAMMA"), "{e}");
        let e = load(Path::new("/nonexistent/x.cube")).unwrap_err();
        assert!(e.contains("/nonexistent/x.cube"), "{e}");
    }

    #[test]
    fn load_reads_a_file() {
        let dir = std::env::temp_dir().join(format!("deliver-lut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("swap.cube");
        std::fs::write(&p, cube_text(&Lut3d::from_fn(3, |[r, g, b]| [g, b, r]))).unwrap();
        let l = load(&p).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(l.size, 3);
        assert!(close(l.apply([0.1, 0.2, 0.3]), [0.2, 0.3, 0.1], 1e-6));
    }
}
