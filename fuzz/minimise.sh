#!/usr/bin/env bash
# Folds a fuzzing run's queue into the committed corpus of one target, minimised:
# afl-cmin over (corpus/<target> + the run's queue), inputs over 16 KiB left out; the
# seeds (seed-*) and fixed crashes (crash-*) are always kept, the rest is what afl-cmin
# keeps, named afl-<hash>.
#
#   fuzz/minimise.sh <target> <afl output dir> [binary dir]
#   e.g. fuzz/minimise.sh cluster out/cluster target/release
#
# Uses afl-cmin.awk from the AFL++ that cargo-afl built: cargo-afl's own `cmin` (the
# Python afl-cmin) records 0 tuples for these persistent-mode binaries here.
set -euo pipefail
target=${1:?target}
out=${2:?afl output dir}
bin=${3:-target/release}
here=$(cd "$(dirname "$0")" && pwd)
corpus="$here/corpus/$target"
afl=$(ls -d "$HOME"/.local/share/afl.rs/rustc-*/afl.rs-*/afl/bin | tail -n 1)
[ -x "$afl/afl-cmin.awk" ] || { echo "no AFL++ under ~/.local/share/afl.rs: run cargo install cargo-afl" >&2; exit 2; }
work=$(mktemp -d "$here/.minimise.XXXXXX") # afl-cmin refuses /tmp
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/in" "$work/min"
find "$corpus" "$out/default/queue" -maxdepth 1 -type f -size -16k -exec cp -t "$work/in" {} +
AFL_PATH=$afl PATH=$afl:$PATH AFL_SKIP_CPUFREQ=1 \
  "$afl/afl-cmin.awk" -i "$work/in" -o "$work/min" -- "$bin/$target" >/dev/null
find "$corpus" -maxdepth 1 -type f ! -name 'seed-*' ! -name 'crash-*' -delete
for f in "$work/min"/*; do
  case $(basename "$f") in seed-* | crash-*) continue ;; esac
  cp "$f" "$corpus/afl-$(sha1sum "$f" | cut -c1-12)"
done
echo "$target: $(find "$corpus" -type f | wc -l) files in corpus/$target"
