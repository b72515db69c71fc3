// Transfer functions shared by the composite and output shaders. Codes:
// 0 BT.709 (also BT.2020 and SMPTE 170M), 1 sRGB (IEC 61966-2-1),
// 2 linear, 3 gamma 2.2, 4 gamma 2.8. Formulas (constants and the
// handling of negative values included) are those of `render::colour`.

// The BT.709/BT.2020 OETF's constants at full precision (BT.2020 Table 4),
// so that the two segments meet.
const BT709_ALPHA: f32 = 1.0992968;
const BT709_BETA: f32 = 0.018053968;

// x^y for x >= 0: 0 at x = 0 (WGSL leaves pow(0, y) undefined).
fn pow0(x: f32, y: f32) -> f32 {
    if (x <= 0.0) {
        return 0.0;
    }
    return pow(x, y);
}

// Linear light -> encoded, for L >= 0 (callers clamp).
fn oetf(l: f32, tf: u32) -> f32 {
    switch tf {
        case 0u: {
            if (l < BT709_BETA) {
                return 4.5 * l;
            }
            return BT709_ALPHA * pow0(l, 0.45) - (BT709_ALPHA - 1.0);
        }
        case 1u: {
            if (l <= 0.0031308) {
                return 12.92 * l;
            }
            return 1.055 * pow0(l, 1.0 / 2.4) - 0.055;
        }
        case 3u: {
            return pow0(l, 1.0 / 2.2);
        }
        case 4u: {
            return pow0(l, 1.0 / 2.8);
        }
        default: {
            return l;
        }
    }
}

// Encoded -> linear light. Negative values (saturation can push a channel
// below 0) stay on the linear segment of BT.709 and sRGB and are 0 for the
// pure powers.
fn eotf(e: f32, tf: u32) -> f32 {
    switch tf {
        case 0u: {
            if (e < 4.5 * BT709_BETA) {
                return e / 4.5;
            }
            return pow0((e + BT709_ALPHA - 1.0) / BT709_ALPHA, 1.0 / 0.45);
        }
        case 1u: {
            if (e <= 0.04045) {
                return e / 12.92;
            }
            return pow0((e + 0.055) / 1.055, 2.4);
        }
        case 3u: {
            return pow0(e, 2.2);
        }
        case 4u: {
            return pow0(e, 2.8);
        }
        default: {
            return e;
        }
    }
}

fn oetf3(c: vec3<f32>, tf: u32) -> vec3<f32> {
    return vec3<f32>(oetf(c.x, tf), oetf(c.y, tf), oetf(c.z, tf));
}

fn eotf3(c: vec3<f32>, tf: u32) -> vec3<f32> {
    return vec3<f32>(eotf(c.x, tf), eotf(c.y, tf), eotf(c.z, tf));
}
