// A plain shader copy, the second bandwidth ceiling of `adamp-graph bench`:
// every invocation reads one vec4 and writes it elsewhere. COPY_WG is
// generated from Rust (src/runtime/bench.rs) and prepended.

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(COPY_WG)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * COPY_WG;
    if (i < arrayLength(&dst)) {
        dst[i] = src[i];
    }
}
