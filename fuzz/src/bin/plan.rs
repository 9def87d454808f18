//! AFL target: `targets::plan` on each input.
#[allow(dead_code)]
#[path = "../targets.rs"]
mod targets;

fn main() {
    afl::fuzz!(|data: &[u8]| targets::plan(data));
}
