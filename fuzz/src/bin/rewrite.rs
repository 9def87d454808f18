//! AFL target: `targets::rewrite` on each input.
#[allow(dead_code)]
#[path = "../targets.rs"]
mod targets;

fn main() {
    afl::fuzz!(|data: &[u8]| targets::rewrite(data));
}
