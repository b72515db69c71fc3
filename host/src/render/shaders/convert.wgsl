// Output conversion (`OutputFormat` steps 2–8): one invocation per 32-bit
// word of the packed output planes, so that 8-bit samples (4 per word) and
// 16-bit samples (2 per word) are written without atomics.

struct Params {
    // width, height, total words of this output, words per row of the grid
    dims: vec4<u32>,
    // bit depth, bytes per sample, planes, chroma shift x | y << 4 | packed RGBA << 8
    fmt: vec4<u32>,
    // byte offset of planes 0..3 from this output's start
    planes: vec4<u32>,
    // first word of this output in `out`, transfer code, dither, full range
    misc: vec4<u32>,
    // chroma plane width, height
    chroma: vec4<u32>,
    // canvas → output primaries, rows
    m0: vec4<f32>,
    m1: vec4<f32>,
    m2: vec4<f32>,
    // Kr, Kb
    k: vec4<f32>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> img: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

// Encoded R'G'B' (0..1) and alpha of one output pixel.
fn encoded(x: u32, y: u32) -> vec4<f32> {
    let p = img[y * P.dims.x + x];
    var c = vec3<f32>(0.0);
    if (p.w > 0.0) {
        c = p.xyz / p.w;
    }
    let l = vec3<f32>(dot(P.m0.xyz, c), dot(P.m1.xyz, c), dot(P.m2.xyz, c));
    let e = clamp(oetf3(max(l, vec3<f32>(0.0)), P.misc.y), vec3<f32>(0.0), vec3<f32>(1.0));
    return vec4<f32>(e, clamp(p.w, 0.0, 1.0));
}

// Y', Cb, Cr (Cb/Cr in −0.5..0.5) of one output pixel.
fn ycbcr(x: u32, y: u32) -> vec3<f32> {
    let e = encoded(x, y).xyz;
    let kr = P.k.x;
    let kb = P.k.y;
    let yy = kr * e.x + (1.0 - kr - kb) * e.y + kb * e.z;
    return vec3<f32>(yy, (e.z - yy) / (2.0 * (1.0 - kb)), (e.x - yy) / (2.0 * (1.0 - kr)));
}

const BAYER: array<u32, 64> = array<u32, 64>(
    0u, 32u, 8u, 40u, 2u, 34u, 10u, 42u,
    48u, 16u, 56u, 24u, 50u, 18u, 58u, 26u,
    12u, 44u, 4u, 36u, 14u, 46u, 6u, 38u,
    60u, 28u, 52u, 20u, 62u, 30u, 54u, 22u,
    3u, 35u, 11u, 43u, 1u, 33u, 9u, 41u,
    51u, 19u, 59u, 27u, 49u, 17u, 57u, 25u,
    15u, 47u, 7u, 39u, 13u, 45u, 5u, 37u,
    63u, 31u, 55u, 23u, 61u, 29u, 53u, 21u
);

fn quantize(v: f32, x: u32, y: u32, dither: bool, max_code: f32) -> u32 {
    var thr = 0.0;
    if (dither) {
        thr = (f32(BAYER[(y & 7u) * 8u + (x & 7u)]) + 0.5) / 64.0 - 0.5;
    }
    return u32(clamp(floor(v + thr + 0.5), 0.0, max_code));
}

// Code value (before quantization) of a luma-like (Y' or R'G'B') sample.
fn luma_code(e: f32, bits: u32) -> f32 {
    if (P.misc.w != 0u) {
        return e * f32((1u << bits) - 1u);
    }
    return (16.0 + 219.0 * e) * f32(1u << (bits - 8u));
}

fn chroma_code(c: f32, bits: u32) -> f32 {
    if (P.misc.w != 0u) {
        return c * f32((1u << bits) - 1u) + f32(1u << (bits - 1u));
    }
    return (128.0 + 224.0 * c) * f32(1u << (bits - 8u));
}

// Sample `i` of plane `plane`.
fn sample(plane: u32, i: u32) -> u32 {
    let bits = P.fmt.x;
    let max_code = f32((1u << bits) - 1u);
    let dither = P.misc.z != 0u;
    let w = P.dims.x;
    let h = P.dims.y;
    if (plane == 0u || plane == 3u) {
        let x = i % w;
        let y = i / w;
        if (plane == 3u) {
            return quantize(encoded(x, y).w * max_code, x, y, false, max_code);
        }
        return quantize(luma_code(ycbcr(x, y).x, bits), x, y, dither, max_code);
    }
    let cw = P.chroma.x;
    let cx = i % cw;
    let cy = i / cw;
    let sx = P.fmt.w & 15u;
    let sy = (P.fmt.w >> 4u) & 15u;
    let x0 = cx << sx;
    let y0 = cy << sy;
    let x1 = min((cx + 1u) << sx, w);
    let y1 = min((cy + 1u) << sy, h);
    var sum = 0.0;
    for (var yy = y0; yy < y1; yy = yy + 1u) {
        for (var xx = x0; xx < x1; xx = xx + 1u) {
            let c = ycbcr(xx, yy);
            if (plane == 1u) {
                sum = sum + c.y;
            } else {
                sum = sum + c.z;
            }
        }
    }
    let mean = sum / f32((x1 - x0) * (y1 - y0));
    return quantize(chroma_code(mean, bits), cx, cy, dither, max_code);
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let word = gid.y * P.dims.w + gid.x;
    if (word >= P.dims.z) {
        return;
    }
    let w = P.dims.x;
    let h = P.dims.y;
    let bits = P.fmt.x;
    let dither = P.misc.z != 0u;
    if (((P.fmt.w >> 8u) & 1u) != 0u) {
        // Packed RGBA, 8 bits: one word is one pixel.
        let x = word % w;
        let y = word / w;
        let e = encoded(x, y);
        let r = quantize(luma_code(e.x, bits), x, y, dither, 255.0);
        let g = quantize(luma_code(e.y, bits), x, y, dither, 255.0);
        let b = quantize(luma_code(e.z, bits), x, y, dither, 255.0);
        let a = quantize(e.w * 255.0, x, y, false, 255.0);
        out[P.misc.x + word] = r | (g << 8u) | (b << 16u) | (a << 24u);
        return;
    }
    let bps = P.fmt.y;
    let per_word = 4u / bps;
    var v = 0u;
    for (var s = 0u; s < per_word; s = s + 1u) {
        let byte = word * 4u + s * bps;
        // Which plane this byte is in (planes are laid out in order).
        var plane = 0u;
        for (var p = 1u; p < P.fmt.z; p = p + 1u) {
            if (byte >= P.planes[p]) {
                plane = p;
            }
        }
        var plane_bytes = w * h * bps;
        if (plane == 1u || plane == 2u) {
            plane_bytes = P.chroma.x * P.chroma.y * bps;
        }
        let off = byte - P.planes[plane];
        if (off >= plane_bytes) {
            // Padding after the last plane.
            continue;
        }
        let q = sample(plane, off / bps);
        v = v | (q << (s * 8u * bps));
    }
    out[P.misc.x + word] = v;
}
