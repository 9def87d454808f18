//! AFL target: `targets::load` on each input.
#[allow(dead_code)]
#[path = "../targets.rs"]
mod targets;

fn main() {
    afl::fuzz!(|data: &[u8]| targets::load(data));
}
