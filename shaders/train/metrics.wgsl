// Per scale-invariant tensor, with a = w_t (the program's copy, what the step
// read) and b = w_{t+1} (gathered from the optimizer's pages): sum(a^2),
// sum(b^2), sum((a-b)^2) and sum((a-b)(a+b)). The host forms ||a|| and
// ||a/|a| - b/|b|||^2 = (|a-b|^2 - (|a|-|b|)^2) / (|a||b|), with
// |a| - |b| = sum((a-b)(a+b)) / (|a| + |b|): no cancellation when the step is small.
@group(0) @binding(0) var<storage, read_write> before: array<f32>;
@group(0) @binding(1) var<storage, read_write> after: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;

const LANES: u32 = {{LANES}}u;
const LEN: u32 = {{LEN}}u;
const SLOT: u32 = {{SLOT}}u;

var<workgroup> acc: array<vec4<f32>, {{LANES}}>;

@compute @workgroup_size({{LANES}})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = vec4<f32>(0.0);
    for (var i = lid.x; i < LEN; i += LANES) {
        let a = before[i];
        let b = after[i];
        let d = a - b;
        s += vec4<f32>(a * a, b * b, d * d, d * (a + b));
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
        sums[4u * SLOT] = acc[0].x;
        sums[4u * SLOT + 1u] = acc[0].y;
        sums[4u * SLOT + 2u] = acc[0].z;
        sums[4u * SLOT + 3u] = acc[0].w;
    }
}
