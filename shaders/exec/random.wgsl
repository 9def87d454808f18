// Philox4x32-10 (Salmon et al., SC11; the Random123 reference), a
// counter-based generator: the bits are a pure function of (counter, key),
// so every invocation draws its own numbers with no state, and the same
// counter and key give the same bits on every adapter (integer arithmetic
// only). The Rust twin is src/ops/random/philox.rs.
const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// (high, low) words of the 64-bit product a * b; WGSL has no 64-bit integers
// or mulhi, so the high word is assembled from 16-bit halves.
fn philox_mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return vec2<u32>(p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u), a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round = round + 1u) {
        if (round > 0u) {
            k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        }
        let p0 = philox_mulhilo(PHILOX_M0, c.x);
        let p1 = philox_mulhilo(PHILOX_M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// A uniform float in [0, 1) from the top 24 bits (every value exact).
fn philox_uniform(b: u32) -> f32 {
    return f32(b >> 8u) * 5.9604644775390625e-8;
}

// Four standard normals from four words (Box-Muller on two pairs; the first
// uniform of a pair is in (0, 1] so its log is finite).
fn philox_normal4(b: vec4<u32>) -> vec4<f32> {
    let r0 = sqrt(-2.0 * log(philox_uniform(b.x) + 5.9604644775390625e-8));
    let t0 = 6.283185307179586 * philox_uniform(b.y);
    let r1 = sqrt(-2.0 * log(philox_uniform(b.z) + 5.9604644775390625e-8));
    let t1 = 6.283185307179586 * philox_uniform(b.w);
    return vec4<f32>(r0 * cos(t0), r0 * sin(t0), r1 * cos(t1), r1 * sin(t1));
}
