// One axis of the separable tent resampler (`OutputFormat` step 1): radius
// max(1, src/dst) source pixels, weights 1 − |k − centre|/radius,
// normalized, source indices clamped to the edge.

struct Params {
    // source width, source height, destination width, destination height
    size: vec4<u32>,
    // x: 0 = horizontal (src w×h -> dst_w×h), 1 = vertical (w×src_h -> w×dst_h)
    axis: vec4<u32>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let horizontal = P.axis.x == 0u;
    // Output size of this pass.
    var ow = P.size.z;
    var oh = P.size.y;
    if (!horizontal) {
        ow = P.size.z;
        oh = P.size.w;
    }
    let x = gid.x;
    let y = gid.y;
    if (x >= ow || y >= oh) {
        return;
    }
    var n_src = P.size.x;
    var n_dst = P.size.z;
    var pos = x;
    if (!horizontal) {
        n_src = P.size.y;
        n_dst = P.size.w;
        pos = y;
    }
    let scale = f32(n_src) / f32(n_dst);
    let r = max(1.0, scale);
    let centre = (f32(pos) + 0.5) * scale - 0.5;
    let k0 = i32(ceil(centre - r));
    let k1 = i32(floor(centre + r));
    var sum = vec4<f32>(0.0);
    var wsum = 0.0;
    for (var k = k0; k <= k1; k = k + 1) {
        let w = 1.0 - abs(f32(k) - centre) / r;
        if (w <= 0.0) {
            continue;
        }
        let kc = u32(clamp(k, 0, i32(n_src) - 1));
        var i = y * ow + kc;
        if (horizontal) {
            i = y * P.size.x + kc;
        } else {
            i = kc * ow + x;
        }
        sum = sum + src[i] * w;
        wsum = wsum + w;
    }
    dst[y * ow + x] = sum / wsum;
}
