#!/usr/bin/env bash
# Hash throughput of hashup against its peers, measured in the same run.
#
#   scripts/bench-hash.sh [RUNS]
#
# Makes (once, under .cache/bench-hash, or $BENCH_DIR) three page-cached data sets:
#   large: 4 x 512 MiB random files    small: 50,000 x 4 KiB files in 50 directories
#   one:   1 x 1 GiB random file
# and times each tool RUNS times (default 3) per data set, keeping the best run (the
# page cache is warm for everyone: the data set is read right before each run). Peers:
# sha256sum, find|xargs -P$(nproc) sha256sum, find|xargs -P$(nproc) openssl dgst,
# rhash -r and sha256deep -r (installed from Debian packages when missing and root).
# The ceiling is `openssl speed -evp sha256` on one core (16 KiB blocks) x cores.
# Prints a table and the issue's targets as ratios. Needs: cargo, python3, openssl.
# HASHUP_BUILDS="musl=DIR/hashup ..." adds other builds of hashup as rows of their own (e.g.
# scripts/dist.sh's static binaries), timed in the same run as the release build.
set -euo pipefail

runs=${1:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${BENCH_DIR:-$repo/.cache/bench-hash}
cores=$(nproc)

log() { printf '%s\n' "$*" >&2; }

if ! command -v rhash >/dev/null || ! command -v sha256deep >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing rhash and hashdeep (Debian packages)..."
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rhash hashdeep >/dev/null 2>&1 || log "could not install rhash/hashdeep; they are left out"
    fi
fi

log "building hashup (release)..."
(cd "$repo" && cargo build --release --quiet)
hashup=$repo/target/release/hashup

make_data() {
    mkdir -p "$data"
    if [ ! -f "$data/.large-done" ]; then
        log "making 4 x 512 MiB random files..."
        rm -rf "$data/large" && mkdir -p "$data/large"
        for i in 1 2 3 4; do head -c $((512 << 20)) /dev/urandom >"$data/large/f$i.bin"; done
        touch "$data/.large-done"
    fi
    if [ ! -f "$data/.one-done" ]; then
        log "making 1 x 1 GiB random file..."
        rm -rf "$data/one" && mkdir -p "$data/one"
        head -c $((1 << 30)) /dev/urandom >"$data/one/big.bin"
        touch "$data/.one-done"
    fi
    if [ ! -f "$data/.small-done" ]; then
        log "making 50,000 x 4 KiB files in 50 directories..."
        rm -rf "$data/small"
        python3 - "$data/small" <<'EOF'
import os, sys
root = sys.argv[1]
for d in range(50):
    path = os.path.join(root, f"d{d:02}")
    os.makedirs(path)
    for f in range(1000):
        with open(os.path.join(path, f"f{f:04}"), "wb") as out:
            out.write(os.urandom(4096))
EOF
        touch "$data/.small-done"
    fi
}
make_data

# Reads a data set into the page cache. Called right before every timed run: these
# VMs run DAMON reclaim, which pages out page-cache pages idle for a few seconds, so
# a set warmed once at the start is partly read from disk by the time a later tool
# gets to it.
warm() {
    case $1 in
    small) find "$data/small" -type f -print0 | xargs -0 cat >/dev/null ;;
    *) cat "$data/$1"/* >/dev/null ;;
    esac
}

# Best wall-clock seconds of $runs runs of a shell command on data set $1.
best_of() {
    local set=$1 cmd=$2 best="" start end t
    for _ in $(seq "$runs"); do
        warm "$set"
        start=$(date +%s.%N)
        bash -c "$cmd" >/dev/null
        end=$(date +%s.%N)
        t=$(echo "$end - $start" | bc -l)
        if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
    done
    echo "$best"
}

log "measuring openssl speed -evp sha256 (one core, 16 KiB blocks)..."
# The 16384-byte column of the summary line, in units of 1000 bytes/s.
openssl_kbs=$(openssl speed -seconds 3 -bytes 16384 -evp sha256 2>/dev/null | awk '/^(sha256|SHA256)/ {v=$NF} END {print v}' | tr -d k)
openssl_gbs=$(echo "$openssl_kbs * 1000 / 1000000000" | bc -l)

declare -A seconds
tools=(hashup sha256sum "xargs sha256sum" "xargs openssl")
command -v rhash >/dev/null && tools+=("rhash -r")
command -v sha256deep >/dev/null && tools+=("sha256deep -r")
declare -A builds
for build in ${HASHUP_BUILDS:-}; do
    builds["hashup ${build%%=*}"]=${build#*=}
    tools+=("hashup ${build%%=*}")
done

command_for() {
    local tool=$1 set=$2 dir=$data/$2 n=1
    [ "$set" = small ] && n=500
    case $tool in
    hashup) echo "'$hashup' hash '$dir'" ;;
    sha256sum) echo "find '$dir' -type f -print0 | sort -z | xargs -0 sha256sum" ;;
    "xargs sha256sum") echo "find '$dir' -type f -print0 | xargs -0 -P$cores -n$n sha256sum" ;;
    "xargs openssl") echo "find '$dir' -type f -print0 | xargs -0 -P$cores -n$n openssl dgst -sha256" ;;
    "rhash -r") echo "rhash --sha256 -r '$dir'" ;;
    "sha256deep -r") echo "sha256deep -r '$dir'" ;;
    *) echo "'${builds[$tool]}' hash '$dir'" ;;
    esac
}

for set in large small one; do
    for tool in "${tools[@]}"; do
        log "timing $tool on $set..."
        seconds[$set,$tool]=$(best_of "$set" "$(command_for "$tool" "$set")")
    done
done

bytes_large=$((4 * 512 << 20))
bytes_one=$((1 << 30))
printf '\nhashup %s, %d cores, best of %d runs, page cache warm; openssl speed -evp sha256 one core: %.3f GB/s\n\n' \
    "$("$hashup" --version | awk '{print $2}')" "$cores" "$runs" "$openssl_gbs"
printf '| %-14s | %-22s | %-22s | %-22s |\n' tool "4 x 512 MiB (GB/s)" "50k x 4 KiB (files/s)" "1 x 1 GiB (GB/s)"
printf '|%s|%s|%s|%s|\n' "----------------" "------------------------" "------------------------" "------------------------"
for tool in "${tools[@]}"; do
    l=$(echo "$bytes_large / ${seconds[large,$tool]} / 1000000000" | bc -l)
    s=$(echo "50000 / ${seconds[small,$tool]}" | bc -l)
    o=$(echo "$bytes_one / ${seconds[one,$tool]} / 1000000000" | bc -l)
    printf '| %-14s | %8.3f (%6.2fs)      | %9.0f (%6.2fs)     | %8.3f (%6.2fs)      |\n' \
        "$tool" "$l" "${seconds[large,$tool]}" "$s" "${seconds[small,$tool]}" "$o" "${seconds[one,$tool]}"
done

ratio() { echo "$1 / $2" | bc -l; }
h_large=$(echo "$bytes_large / ${seconds[large,hashup]} / 1000000000" | bc -l)
h_one=$(echo "$bytes_one / ${seconds[one,hashup]} / 1000000000" | bc -l)
printf '\ntargets:\n'
printf '  large files vs %d x openssl single-core: %.3f (target >= 0.92)\n' "$cores" "$(ratio "$h_large" "$(echo "$cores * $openssl_gbs" | bc -l)")"
printf '  large files vs xargs -P%d openssl dgst:  %.2fx\n' "$cores" "$(ratio "${seconds[large,xargs openssl]}" "${seconds[large,hashup]}")"
if [ -n "${seconds[small,rhash -r]:-}" ]; then
    printf '  50k small files vs rhash -r:             %.2fx (target >= 3)\n' "$(ratio "${seconds[small,rhash -r]}" "${seconds[small,hashup]}")"
fi
printf '  one 1 GiB file vs openssl single-core:   %.3f (target >= 0.95)\n' "$(ratio "$h_one" "$openssl_gbs")"

# Peak resident memory of hashup: flat in file size, modest in file count. GNU time
# reads it from the process's own rusage (a Python wrapper would count its own
# pages, inherited across fork, too).
peak_rss_kib() {
    /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n 1
}
if [ ! -x /usr/bin/time ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null 2>&1 || true
fi
[ -x /usr/bin/time ] || { log "no /usr/bin/time (Debian package time): memory not measured"; exit 0; }
sparse=$data/sparse-4g.bin
[ -f "$sparse" ] || truncate -s 4G "$sparse"
printf '\npeak RSS of hashup hash (KiB): one 4 KiB file %s, 1 GiB file %s, 4 GiB sparse file %s, 50k files %s\n' \
    "$(peak_rss_kib "$hashup" hash "$repo/README.md")" \
    "$(peak_rss_kib "$hashup" hash "$data/one/big.bin")" \
    "$(peak_rss_kib "$hashup" hash "$sparse")" \
    "$(peak_rss_kib "$hashup" hash "$data/small")"
