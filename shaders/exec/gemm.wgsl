// A tiled matrix product C[b] = A[b] · B[b] over `BATCH` batches, with
// A: M×K and B: K×N read through `load_a(b, m, k)` and `load_b(b, k, n)`
// and each result written by `store(b, m, n, v)` (generated in Rust: MatMul's
// broadcast batches, Gemm's transposes, Conv's implicit im2col).
//
// A workgroup of 8×8 invocations computes a 32×32 tile of C; each invocation
// a 4×4 block in registers. K advances in steps of 32 through two tiles in
// workgroup memory, so every element loaded from storage feeds 32 products.
{{BINDINGS}}
const M: u32 = {{M}}u;
const N: u32 = {{N}}u;
const K: u32 = {{K}}u;
// K range of one workgroup along z (split-K): KSPLIT steps of KCHUNK.
const KCHUNK: u32 = {{KCHUNK}}u;
const TILE: u32 = 32u;

// sa[k * 8 + i]: rows 4i..4i+3 of the A tile at column k; sb likewise for B's columns.
var<workgroup> sa: array<vec4<f32>, 256>;
var<workgroup> sb: array<vec4<f32>, 256>;

{{FUNCTIONS}}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = wid.z / {{KSPLIT}}u;
    let part = wid.z % {{KSPLIT}}u;
    let m0 = wid.y * TILE;
    let n0 = wid.x * TILE;
    let t = lid.y * 8u + lid.x;
    let k_begin = part * KCHUNK;
    let k_end = min(K, k_begin + KCHUNK);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = k_begin; k0 < k_end; k0 += TILE) {
        // 256 vec4 per tile, 4 per invocation.
        for (var e = t; e < 256u; e += 64u) {
            let kk = e / 8u;
            let q = (e % 8u) * 4u;
            let gk = k0 + kk;
            var va = vec4<f32>(0.0);
            var vb = vec4<f32>(0.0);
            if (gk < k_end) {
                let gm = m0 + q;
                if (gm < M) { va.x = load_a(b, gm, gk); }
                if (gm + 1u < M) { va.y = load_a(b, gm + 1u, gk); }
                if (gm + 2u < M) { va.z = load_a(b, gm + 2u, gk); }
                if (gm + 3u < M) { va.w = load_a(b, gm + 3u, gk); }
                let gn = n0 + q;
                if (gn < N) { vb.x = load_b(b, gk, gn); }
                if (gn + 1u < N) { vb.y = load_b(b, gk, gn + 1u); }
                if (gn + 2u < N) { vb.z = load_b(b, gk, gn + 2u); }
                if (gn + 3u < N) { vb.w = load_b(b, gk, gn + 3u); }
            }
            sa[e] = va;
            sb[e] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE; kk++) {
            let a = sa[kk * 8u + lid.y];
            let bv = sb[kk * 8u + lid.x];
            acc0 = fma(vec4<f32>(a.x), bv, acc0);
            acc1 = fma(vec4<f32>(a.y), bv, acc1);
            acc2 = fma(vec4<f32>(a.z), bv, acc2);
            acc3 = fma(vec4<f32>(a.w), bv, acc3);
        }
        workgroupBarrier();
    }
    let gm = m0 + lid.y * 4u;
    let gn = n0 + lid.x * 4u;
    put_row(b, part, gm, gn, acc0);
    put_row(b, part, gm + 1u, gn, acc1);
    put_row(b, part, gm + 2u, gn, acc2);
    put_row(b, part, gm + 3u, gn, acc3);
}

fn put_row(b: u32, part: u32, m: u32, n: u32, v: vec4<f32>) {
    if (m >= M) { return; }
    if (n < N) { store(b, part, m, n, v.x); }
    if (n + 1u < N) { store(b, part, m, n + 1u, v.y); }
    if (n + 2u < N) { store(b, part, m, n + 2u, v.z); }
    if (n + 3u < N) { store(b, part, m, n + 3u, v.w); }
}
