//! Colour tags (ITU-T H.273 code points, as they cross the ABI) to the
//! colour config of the AV1 sequence header, which uses the same code points.

use deliver_plugin_api::abi::ColorTags;
use rav1e::color::{
    ColorDescription, ColorPrimaries as P, MatrixCoefficients as M, PixelRange,
    TransferCharacteristics as T,
};

/// H.273 colour primaries rav1e can signal.
const PRIMARIES: &[(u32, P)] = &[
    (1, P::BT709),
    (2, P::Unspecified),
    (4, P::BT470M),
    (5, P::BT470BG),
    (6, P::BT601),
    (7, P::SMPTE240),
    (8, P::GenericFilm),
    (9, P::BT2020),
    (10, P::XYZ),
    (11, P::SMPTE431),
    (12, P::SMPTE432),
    (22, P::EBU3213),
];

/// H.273 transfer characteristics rav1e can signal.
const TRANSFERS: &[(u32, T)] = &[
    (1, T::BT709),
    (2, T::Unspecified),
    (4, T::BT470M),
    (5, T::BT470BG),
    (6, T::BT601),
    (7, T::SMPTE240),
    (8, T::Linear),
    (9, T::Log100),
    (10, T::Log100Sqrt10),
    (11, T::IEC61966),
    (12, T::BT1361),
    (13, T::SRGB),
    (14, T::BT2020_10Bit),
    (15, T::BT2020_12Bit),
    (16, T::SMPTE2084),
    (17, T::SMPTE428),
    (18, T::HLG),
];

/// H.273 matrix coefficients rav1e can signal.
const MATRICES: &[(u32, M)] = &[
    (0, M::Identity),
    (1, M::BT709),
    (2, M::Unspecified),
    (4, M::FCC),
    (5, M::BT470BG),
    (6, M::BT601),
    (7, M::SMPTE240),
    (8, M::YCgCo),
    (9, M::BT2020NCL),
    (10, M::BT2020CL),
    (11, M::SMPTE2085),
    (12, M::ChromatNCL),
    (13, M::ChromatCL),
    (14, M::ICtCp),
];

fn lookup<V: Copy>(table: &[(u32, V)], code: u32, what: &str) -> Result<V, String> {
    table
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            format!(
                "colour {what} {code} cannot be written into an AV1 sequence header by rav1e; accepted H.273 code points: {}",
                table
                    .iter()
                    .map(|(c, _)| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// What goes into the sequence header, and the tags it then carries.
#[derive(Debug, Clone, Copy)]
pub struct SequenceColour {
    /// `None` when primaries, transfer and matrix are all unspecified:
    /// the header then leaves its colour description out.
    pub description: Option<ColorDescription>,
    pub range: PixelRange,
    /// The tags a decoder will read back. AV1 has no "unspecified" range:
    /// its one bit says limited or full, so an unknown range is written as
    /// limited (the default of every AV1 decoder).
    pub written: ColorTags,
}

/// Maps the host's tags to the sequence header's colour config.
///
/// # Errors
/// A code point the AV1 header (or rav1e) cannot carry, named with its kind
/// and the accepted values.
pub fn sequence_colour(tags: ColorTags) -> Result<SequenceColour, String> {
    let range = match tags.range {
        0 | 1 => PixelRange::Limited,
        2 => PixelRange::Full,
        r => {
            return Err(format!(
                "colour range {r} is not one of 0 (unspecified), 1 (limited), 2 (full)"
            ))
        }
    };
    let description = if (tags.primaries, tags.transfer, tags.matrix) == (2, 2, 2) {
        None
    } else {
        Some(ColorDescription {
            color_primaries: lookup(PRIMARIES, tags.primaries, "primaries")?,
            transfer_characteristics: lookup(TRANSFERS, tags.transfer, "transfer")?,
            matrix_coefficients: lookup(MATRICES, tags.matrix, "matrix")?,
        })
    };
    Ok(SequenceColour {
        description,
        range,
        written: ColorTags {
            range: if range == PixelRange::Full { 2 } else { 1 },
            ..tags
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt709_limited_is_written_as_given() {
        let c = sequence_colour(ColorTags::BT709_LIMITED).unwrap();
        let d = c.description.unwrap();
        assert_eq!(d.color_primaries, P::BT709);
        assert_eq!(d.transfer_characteristics, T::BT709);
        assert_eq!(d.matrix_coefficients, M::BT709);
        assert_eq!(c.range, PixelRange::Limited);
        assert_eq!(c.written, ColorTags::BT709_LIMITED);
    }

    #[test]
    fn unspecified_leaves_the_description_out_and_range_limited() {
        let c = sequence_colour(ColorTags::UNSPECIFIED).unwrap();
        assert!(c.description.is_none());
        assert_eq!(c.written.range, 1);
    }

    #[test]
    fn bt2020_pq_full_range() {
        let c = sequence_colour(ColorTags {
            primaries: 9,
            transfer: 16,
            matrix: 9,
            range: 2,
        })
        .unwrap();
        let d = c.description.unwrap();
        assert_eq!(d.transfer_characteristics, T::SMPTE2084);
        assert_eq!(d.matrix_coefficients, M::BT2020NCL);
        assert_eq!(c.range, PixelRange::Full);
    }

    #[test]
    fn a_reserved_code_point_is_named() {
        let e = sequence_colour(ColorTags {
            primaries: 3,
            ..ColorTags::BT709_LIMITED
        })
        .unwrap_err();
        assert!(e.contains("primaries 3"), "{e}");
        assert!(e.contains("1, 2, 4"), "{e}");
        assert!(sequence_colour(ColorTags {
            range: 7,
            ..ColorTags::BT709_LIMITED
        })
        .is_err());
    }
}
