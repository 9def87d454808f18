// Per piece of a scale-invariant tensor: sum(w_t^2), sum(w_{t+1}^2) and
// sum(w_t * w_{t+1}), from the values the step read (the program's copy) and
// the optimizer's updated page. One workgroup per piece; the host adds the
// pieces of a tensor and forms ||w|| and ||w_hat_{t+1} - w_hat_t||.
@group(0) @binding(0) var<storage, read_write> before: array<f32>;
@group(0) @binding(1) var<storage, read_write> after: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;

const LANES: u32 = {{LANES}}u;
const LEN: u32 = {{LEN}}u;
const SLOT: u32 = {{SLOT}}u;

var<workgroup> acc: array<vec3<f32>, {{LANES}}>;

@compute @workgroup_size({{LANES}})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = vec3<f32>(0.0);
    for (var i = lid.x; i < LEN; i += LANES) {
        let a = before[i];
        let b = after[i];
        s += vec3<f32>(a * a, b * b, a * b);
    }
    acc[lid.x] = s;
    workgroupBarrier();
    for (var w = LANES / 2u; w > 0u; w /= 2u) {
        if (lid.x < w) {
            acc[lid.x] += acc[lid.x + w];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        sums[3u * SLOT] = acc[0].x;
        sums[3u * SLOT + 1u] = acc[0].y;
        sums[3u * SLOT + 2u] = acc[0].z;
    }
}
