#!/usr/bin/env bash
# Long fuzz runs (not CI; CI replays the corpus in tests/suite/fuzz_corpus.rs).
# usage: scripts/fuzz.sh TARGET [SECONDS]   TARGET: load analyze plan rewrite mutate
# Builds the AFL++ targets with cargo-afl (stable toolchain; installs it into
# target/fuzz-tools when missing) and fuzzes TARGET on one core at low priority.
# Findings land in fuzz/target/out/TARGET; `scripts/fuzz.sh keep TARGET`
# copies the queue entries that found new coverage into fuzz/corpus/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
tools="$root/target/fuzz-tools"
export PATH="$tools/bin:$PATH"
export CARGO_TARGET_DIR="$root/fuzz/target"
mode="${1:?TARGET: load, analyze, plan, rewrite, mutate (or: keep TARGET)}"
if [ "$mode" = keep ]; then
    # The first queue entries that found new coverage, up to 4 KB each, become
    # the committed corpus CI replays: at most 64 models (a rewrite of one takes
    # some 50 ms in a debug build) or 500 mutation scripts, a smoke run of seconds.
    target="${2:?keep TARGET}"
    max=64
    [ "$target" = mutate ] && max=500
    rm -rf "fuzz/corpus/$target" && mkdir -p "fuzz/corpus/$target"
    n=0
    for f in "fuzz/target/out/$target/default/queue/"*+cov*; do
        [ "$n" -lt "$max" ] || break
        [ -f "$f" ] && [ "$(stat -c %s "$f")" -le 4096 ] || continue
        n=$((n + 1))
        cp "$f" "fuzz/corpus/$target/$(printf '%05d' "$n")"
    done
    echo "fuzz/corpus/$target: $n inputs"
    exit 0
fi
target="$mode"
seconds="${2:-1800}"
if ! command -v cargo-afl >/dev/null 2>&1; then
    cargo install cargo-afl --locked --root "$tools"
fi
(cd fuzz && nice cargo afl build --release --locked --bin "$target")
in="fuzz/target/in/$target"
rm -rf "$in" && mkdir -p "$in"
if [ "$target" = mutate ]; then
    # A script's first byte picks the seed model: one start per seed.
    for i in $(seq 0 31); do printf "$(printf '\\%03o' "$i")\\001\\003\\000\\007" > "$in/seed$i"; done
else
    # The small zoo models (the mutate target's seeds) start the byte-level targets.
    find fixtures/zoo -name '*.onnx' -size -40k -exec cp {} "$in/" \;
fi
mkdir -p fuzz/target/out
[ -d "fuzz/corpus/$target" ] && cp "fuzz/corpus/$target"/* "$in/" 2>/dev/null || true
# No core dumps to wait for, no CPU-frequency check, no curses UI; -V stops after SECONDS.
# AFL_AUTORESUME: a second run of a target continues its queue.
AFL_AUTORESUME=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 \
    nice cargo afl fuzz -i "$in" -o "fuzz/target/out/$target" -t 5000 -V "$seconds" -- "fuzz/target/release/$target"
