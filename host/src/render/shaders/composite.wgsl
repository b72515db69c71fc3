// Composite: one invocation per canvas pixel runs the per-pixel program of
// `render::plan` over a batch of layers (whole mix pairs only). A frame with
// more distinct sources than the four source slots is drawn in several
// batches; each batch after the first continues from the canvas buffer.

struct Params {
    // width, height, first layer, end layer (exclusive)
    size: vec4<u32>,
    // x: 1 = start from the background, y: transfer code
    flags: vec4<u32>,
    background: vec4<f32>,
}

struct Layer {
    // inverse matrix: m0 = (m[0], m[1], m[2], opacity), m1 = (m[3], m[4], m[5], 0)
    m0: vec4<f32>,
    m1: vec4<f32>,
    // left, top, right, bottom in source pixels
    crop: vec4<f32>,
    // xyz lift, w exposure gain
    lift: vec4<f32>,
    // xyz gamma, w saturation
    gamma: vec4<f32>,
    // xyz gain
    gain: vec4<f32>,
    lut_min: vec4<f32>,
    lut_max: vec4<f32>,
    // t, softness, dir.x, dir.y
    mixp: vec4<f32>,
    // dip colour (linear premultiplied)
    dip: vec4<f32>,
    // source slot, source width, source height, flags (blend 0..1, identity
    // colour ops 2, mix kind 3..4: 0 none, 1 dissolve, 2 dip, 3 wipe)
    info: vec4<u32>,
    // LUT size (0: none), offset of its first entry in `lut_data`
    lut: vec4<u32>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> layers: array<Layer>;
@group(0) @binding(2) var<storage, read> lut_data: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> canvas: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> s0: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> s1: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> s2: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> s3: array<vec4<f32>>;

fn texel(slot: u32, i: u32) -> vec4<f32> {
    switch slot {
        case 0u: {
            return s0[i];
        }
        case 1u: {
            return s1[i];
        }
        case 2u: {
            return s2[i];
        }
        default: {
            return s3[i];
        }
    }
}

fn lut_at(base: u32, n: u32, r: u32, g: u32, b: u32) -> vec3<f32> {
    return lut_data[base + r + n * (g + n * b)].xyz;
}

// Tetrahedral interpolation in a size³ cube (red fastest).
fn lut_apply(L: Layer, e: vec3<f32>) -> vec3<f32> {
    let n = L.lut.x;
    let base = L.lut.y;
    let top = f32(n - 1u);
    let p = clamp((e - L.lut_min.xyz) / (L.lut_max.xyz - L.lut_min.xyz) * top, vec3<f32>(0.0), vec3<f32>(top));
    let i0 = min(vec3<u32>(floor(p)), vec3<u32>(n - 2u));
    let d = p - vec3<f32>(i0);
    let i1 = i0 + vec3<u32>(1u);
    let c000 = lut_at(base, n, i0.x, i0.y, i0.z);
    let c111 = lut_at(base, n, i1.x, i1.y, i1.z);
    var c = c000;
    if (d.x > d.y) {
        if (d.y > d.z) {
            let c100 = lut_at(base, n, i1.x, i0.y, i0.z);
            let c110 = lut_at(base, n, i1.x, i1.y, i0.z);
            c = c000 + d.x * (c100 - c000) + d.y * (c110 - c100) + d.z * (c111 - c110);
        } else if (d.x > d.z) {
            let c100 = lut_at(base, n, i1.x, i0.y, i0.z);
            let c101 = lut_at(base, n, i1.x, i0.y, i1.z);
            c = c000 + d.x * (c100 - c000) + d.z * (c101 - c100) + d.y * (c111 - c101);
        } else {
            let c001 = lut_at(base, n, i0.x, i0.y, i1.z);
            let c101 = lut_at(base, n, i1.x, i0.y, i1.z);
            c = c000 + d.z * (c001 - c000) + d.x * (c101 - c001) + d.y * (c111 - c101);
        }
    } else {
        if (d.z > d.y) {
            let c001 = lut_at(base, n, i0.x, i0.y, i1.z);
            let c011 = lut_at(base, n, i0.x, i1.y, i1.z);
            c = c000 + d.z * (c001 - c000) + d.y * (c011 - c001) + d.x * (c111 - c011);
        } else if (d.z > d.x) {
            let c010 = lut_at(base, n, i0.x, i1.y, i0.z);
            let c011 = lut_at(base, n, i0.x, i1.y, i1.z);
            c = c000 + d.y * (c010 - c000) + d.z * (c011 - c010) + d.x * (c111 - c011);
        } else {
            let c010 = lut_at(base, n, i0.x, i1.y, i0.z);
            let c110 = lut_at(base, n, i1.x, i1.y, i0.z);
            c = c000 + d.y * (c010 - c000) + d.x * (c110 - c010) + d.z * (c111 - c110);
        }
    }
    return c;
}

fn colour_ops(L: Layer, px: vec4<f32>) -> vec4<f32> {
    if (px.w <= 0.0) {
        return px;
    }
    let tf = P.flags.y;
    let a = px.w;
    let c = px.xyz / a * L.lift.w;
    var e = oetf3(max(c, vec3<f32>(0.0)), tf);
    e = L.gain.xyz * (e + L.lift.xyz * (vec3<f32>(1.0) - e));
    e = max(e, vec3<f32>(0.0));
    e = vec3<f32>(pow0(e.x, 1.0 / L.gamma.x), pow0(e.y, 1.0 / L.gamma.y), pow0(e.z, 1.0 / L.gamma.z));
    let y = 0.2126 * e.x + 0.7152 * e.y + 0.0722 * e.z;
    e = vec3<f32>(y) + (e - vec3<f32>(y)) * L.gamma.w;
    if (L.lut.x >= 2u) {
        e = lut_apply(L, clamp(e, vec3<f32>(0.0), vec3<f32>(1.0)));
    }
    return vec4<f32>(eotf3(e, tf) * a, a);
}

fn shade(L: Layer, x: u32, y: u32) -> vec4<f32> {
    let fx = f32(x) + 0.5;
    let fy = f32(y) + 0.5;
    let u = L.m0.x * fx + L.m0.y * fy + L.m0.z;
    let v = L.m1.x * fx + L.m1.y * fy + L.m1.z;
    let cr = L.crop;
    if (u < cr.x || u >= cr.z || v < cr.y || v >= cr.w) {
        return vec4<f32>(0.0);
    }
    let w = i32(L.info.y);
    let h = i32(L.info.z);
    // Texels the crop rectangle touches (and that exist).
    let xlo = max(i32(floor(cr.x)), 0);
    let xhi = min(i32(ceil(cr.z)) - 1, w - 1);
    let ylo = max(i32(floor(cr.y)), 0);
    let yhi = min(i32(ceil(cr.w)) - 1, h - 1);
    if (xlo > xhi || ylo > yhi) {
        // The crop holds no texel of the image.
        return vec4<f32>(0.0);
    }
    let su = u - 0.5;
    let sv = v - 0.5;
    let fu = floor(su);
    let fv = floor(sv);
    let wx = su - fu;
    let wy = sv - fv;
    let x0 = clamp(i32(fu), xlo, xhi);
    let x1 = clamp(i32(fu) + 1, xlo, xhi);
    let y0 = clamp(i32(fv), ylo, yhi);
    let y1 = clamp(i32(fv) + 1, ylo, yhi);
    let slot = L.info.x;
    let c00 = texel(slot, u32(y0 * w + x0));
    let c10 = texel(slot, u32(y0 * w + x1));
    let c01 = texel(slot, u32(y1 * w + x0));
    let c11 = texel(slot, u32(y1 * w + x1));
    // a + (b − a)·f, as the CPU writes it (f = 0 gives a exactly).
    let top = c00 + (c10 - c00) * wx;
    let bot = c01 + (c11 - c01) * wx;
    var c = top + (bot - top) * wy;
    if ((L.info.w & 4u) == 0u) {
        c = colour_ops(L, c);
    }
    return c * L.m0.w;
}

fn straight(p: vec4<f32>) -> vec3<f32> {
    if (p.w > 0.0) {
        return p.xyz / p.w;
    }
    return vec3<f32>(0.0);
}

fn blend_op(b: vec4<f32>, s: vec4<f32>, mode: u32) -> vec4<f32> {
    switch mode {
        case 0u: {
            return s + b * (1.0 - s.w);
        }
        case 1u: {
            return vec4<f32>(s.xyz + b.xyz, min(1.0, s.w + b.w));
        }
        default: {
            let cs = straight(s);
            let cb = straight(b);
            var f = cb * cs;
            if (mode == 3u) {
                f = cb + cs - cb * cs;
            }
            let rgb = s.xyz * (1.0 - b.w) + b.xyz * (1.0 - s.w) + s.w * b.w * f;
            return vec4<f32>(rgb, s.w + b.w * (1.0 - s.w));
        }
    }
}

fn mix_factor(L: Layer, x: u32, y: u32) -> f32 {
    let t = L.mixp.x;
    if (((L.info.w >> 3u) & 3u) != 3u) {
        return t;
    }
    let p = vec2<f32>((f32(x) + 0.5) / f32(P.size.x) - 0.5, (f32(y) + 0.5) / f32(P.size.y) - 0.5);
    let dir = L.mixp.zw;
    let span = abs(dir.x) + abs(dir.y);
    let q = (dot(p, dir) + span / 2.0) / span;
    let s = L.mixp.y;
    if (s > 0.0) {
        return clamp((t * (1.0 + s) - q) / s, 0.0, 1.0);
    }
    return select(0.0, 1.0, q < t);
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let y = gid.y;
    if (x >= P.size.x || y >= P.size.y) {
        return;
    }
    let idx = y * P.size.x + x;
    var acc = P.background;
    if (P.flags.x == 0u) {
        acc = canvas[idx];
    }
    var i = P.size.z;
    let end = P.size.w;
    loop {
        if (i >= end) {
            break;
        }
        let L = layers[i];
        var c = shade(L, x, y);
        var blend = L.info.w & 3u;
        if (i + 1u < end) {
            let M = layers[i + 1u];
            let kind = (M.info.w >> 3u) & 3u;
            if (kind != 0u) {
                let d = shade(M, x, y);
                let t = mix_factor(M, x, y);
                if (kind == 2u) {
                    if (t < 0.5) {
                        c = c * (1.0 - 2.0 * t) + M.dip * (2.0 * t);
                    } else {
                        c = M.dip * (2.0 - 2.0 * t) + d * (2.0 * t - 1.0);
                    }
                } else {
                    c = c * (1.0 - t) + d * t;
                }
                blend = M.info.w & 3u;
                i = i + 1u;
            }
        }
        acc = blend_op(acc, c, blend);
        i = i + 1u;
    }
    canvas[idx] = acc;
}
