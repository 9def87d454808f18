//! The random streams of the device kernels: Philox4x32-10, a counter-based
//! generator (the bits are a pure function of a 128-bit counter and a 64-bit
//! key). A kernel draws four words per block of four elements with
//!
//! - key = the run's seed (the executor's step buffer), or the node's own
//!   `seed` attribute when it has one, and
//! - counter = (block index, step, the node's stream, 0),
//!
//! so every step draws fresh numbers from the same compiled pipeline, every
//! node its own, and the same seed and step give the same bits on every
//! adapter. The WGSL is `shaders/exec/random.wgsl`; this file holds its Rust
//! twin, checked against the published known-answer vectors.
use crate::exec::kernel::{self as kern, Bind, Elem, KernelCtx, Launch};
use crate::ir::Node;
use std::fmt::Write;

/// The WGSL generator and its float conversions.
pub(crate) const WGSL: &str = include_str!("../../../shaders/exec/random.wgsl");

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32-10 of `counter` under `key` (the Random123 definition).
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [((p1 >> 32) as u32) ^ c[1] ^ k[0], p1 as u32, ((p0 >> 32) as u32) ^ c[3] ^ k[1], p0 as u32];
    }
    c
}

/// The counter of a block of four elements of a node's stream at a step.
pub fn counter(block: u32, step: u32, stream: u32) -> [u32; 4] {
    [block, step, stream, 0]
}

/// The uniform float in [0, 1) of a word, as the WGSL computes it.
pub fn uniform(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// The key a node draws with: its `seed` attribute when it has one (the
/// draws are then fixed by the model, as ONNX asks), else the run's seed.
pub fn node_key(node: &Node) -> Option<[u32; 2]> {
    // Dropout's seed is an INT; the random ops' a FLOAT.
    if node.is(&crate::ops::DROPOUT) {
        crate::ops::DROPOUT_SEED.get(node).map(|s| [s as u64 as u32, (s as u64 >> 32) as u32])
    } else {
        crate::ops::RANDOM_SEED.get(node).map(|s| [s.to_bits(), 0])
    }
}

fn key_wgsl(node: &Node) -> String {
    match node_key(node) {
        Some([lo, hi]) => format!("vec2<u32>({lo}u, {hi}u)"),
        None => "vec2<u32>(step[1], step[2])".into(),
    }
}

/// One launch drawing for `n` elements, four per invocation. `decls` are the
/// bindings before the step buffer (`step`), which is bound last. `pre` runs
/// once per invocation; `body` once per element, with `i` its index, `b` its
/// word and, with `normal`, `g` its standard normal.
pub(crate) fn draw_launch(ctx: &KernelCtx, decls: &[(&str, Elem, Bind)], n: usize, pre: &str, body: &str, normal: bool) -> Result<Launch, String> {
    let blocks = n.div_ceil(4);
    if u32::try_from(n).is_err() {
        return Err(format!("{n} elements; random streams index at most 2^32"));
    }
    let mut names: Vec<(&str, Elem)> = decls.iter().map(|(a, e, _)| (*a, *e)).collect();
    names.push(("step", Elem::Bool));
    let mut binds: Vec<Bind> = decls.iter().map(|(_, _, b)| *b).collect();
    binds.push(Bind::Step);
    let mut main = String::new();
    let _ = writeln!(main, "@compute @workgroup_size({})", kern::WORKGROUP);
    let _ = writeln!(main, "fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {{");
    let _ = writeln!(main, "    let j = gid.x + gid.y * nwg.x * {}u;", kern::WORKGROUP);
    let _ = writeln!(main, "    if (j >= {blocks}u) {{ return; }}");
    let _ = writeln!(main, "    let bits = philox4x32_10(vec4<u32>(j, step[0], {}u, 0u), {});", ctx.stream, key_wgsl(ctx.node));
    if normal {
        let _ = writeln!(main, "    let gauss = philox_normal4(bits);");
    }
    if !pre.is_empty() {
        let _ = writeln!(main, "{pre}");
    }
    for (e, c) in ["x", "y", "z", "w"].iter().enumerate() {
        let g = if normal { format!(" let g = gauss.{c};") } else { String::new() };
        let _ = writeln!(main, "    {{ let i = 4u * j + {e}u; if (i < {n}u) {{ let b = bits.{c};{g}\n{body}\n    }} }}");
    }
    main.push_str("}\n");
    let wgsl = format!("{}{}{WGSL}{main}", kern::bindings(&names), kern::PRELUDE);
    Ok(Launch { label: kern::label(ctx.node, ""), wgsl, binds, groups: kern::groups_for(blocks, &ctx.limits) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's kat_vectors, the three philox4x32 10 lines: counter, key, result.
    const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        ([0, 0, 0, 0], [0, 0], [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]),
        ([u32::MAX; 4], [u32::MAX; 2], [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]),
        ([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0], [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]),
    ];

    #[test]
    fn philox_matches_the_known_answers() {
        for (c, k, want) in KAT {
            assert_eq!(philox4x32_10(c, k), want, "counter {c:08x?} key {k:08x?}");
        }
    }

    #[test]
    fn uniform_is_in_the_unit_interval() {
        assert_eq!(uniform(0), 0.0);
        assert!(uniform(u32::MAX) < 1.0);
        assert_eq!(uniform(u32::MAX), 1.0 - 1.0 / 16_777_216.0);
    }

    /// The WGSL generator on the test adapter gives the known answers, and the
    /// same bits as the Rust twin for counters that carry through every word.
    #[cfg(feature = "gpu")]
    #[test]
    fn wgsl_philox_matches_the_known_answers() {
        let gpu = crate::ops::util::device_test::gpu();
        let mut cases: Vec<([u32; 4], [u32; 2])> = KAT.iter().map(|(c, k, _)| (*c, *k)).collect();
        for i in 0..61u32 {
            let m = i.wrapping_mul(0x9E37_79B9);
            cases.push(([m, !m, m.rotate_left(7), i], [m ^ 0xdead_beef, m.rotate_right(3)]));
        }
        // Binding 0 holds each case as (counter, key, 0, 0) and receives the results over its counters.
        let src = format!(
            "@group(0) @binding(0) var<storage, read_write> io: array<vec4<u32>>;\n{WGSL}\n\
             @compute @workgroup_size(64)\n\
             fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{\n\
             \x20   let i = gid.x;\n\
             \x20   if (i >= {}u) {{ return; }}\n\
             \x20   io[2u * i] = philox4x32_10(io[2u * i], io[2u * i + 1u].xy);\n\
             }}\n",
            cases.len()
        );
        let words: Vec<u32> = cases.iter().flat_map(|(c, k)| [c[0], c[1], c[2], c[3], k[0], k[1], 0, 0]).collect();
        let size = (4 * words.len()) as u64;
        let buf = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("philox"), size, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
        gpu.queue.write_buffer(&buf, 0, &words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>());
        let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("philox"), source: wgpu::ShaderSource::Wgsl(src.into()) });
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: Some("philox"), layout: None, module: &module, entry_point: Some("main"), compilation_options: Default::default(), cache: None });
        let bind = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("philox"), layout: &pipeline.get_bind_group_layout(0), entries: &[wgpu::BindGroupEntry { binding: 0, resource: buf.as_entire_binding() }] });
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("philox") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("philox"), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(cases.len().div_ceil(64) as u32, 1, 1);
        }
        gpu.queue.submit([enc.finish()]);
        let bytes = gpu.read_bytes(&buf, 0, size, "philox").expect("read back");
        let got: Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        for (i, (c, k)) in cases.iter().enumerate() {
            let want = if i < KAT.len() { KAT[i].2 } else { philox4x32_10(*c, *k) };
            assert_eq!(&got[8 * i..8 * i + 4], &want, "case {i}: counter {c:08x?} key {k:08x?}");
        }
    }
}
