#!/usr/bin/env bash
# Runs scripts/shard/slurm-array.sh under a real Slurm: a one-node cluster on 127.0.0.1
# (munged, slurmctld, slurmd started here, as root, state in a temporary directory), SeaweedFS
# as the store, a 4-task array (`sbatch --array=0-3 --wait`) uploading a test tree with --s3.
# Then checks that every file was stored exactly once: each file in exactly one shard's
# manifest, uploaded, in the shard its name hashes to; `hashup manifest merge` clean against
# the tree's `--dry-run` list; the bucket listing under the prefix equal to the tree, sizes
# and x-amz-meta-prominence_sha256 included. Then runs one shard again on its own
# (HASHUP_SHARDS) and submits an array that does not start at 0, which the recipe must refuse.
#
#   scripts/shard/test-slurm.sh              exit 0 passed, 1 a check failed, 2 set-up failed
#
# Needs Debian's slurm-wlm and munge: installed here (apt-get) when missing and running as root.
# SeaweedFS comes from scripts/seaweedfs.sh (HASHUP_PYENV picks its venv); hashup is built
# (debug; HASHUP_PROFILE=release for a release build). Everything started is stopped at exit;
# the work directory is removed after a pass and kept, with every log, after a failure.
# No cgroups, no systemd: proctrack/linuxproc and task/none, which a container allows.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
profile=${HASHUP_PROFILE:-debug}
bucket=slurmtest
prefix=run
tasks=4

start_time=$(date +%s.%N)
phase_start=$start_time
phases=()
log() { printf 'test-slurm: %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }
die() { log "set-up failed: $*"; exit 2; }
# Seconds since $1 (a `date +%s.%N`), to a tenth.
since() { awk -v from="$1" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - from }'; }
# Ends the current phase: logs how long it took and keeps it for the closing table.
phase_done() {
    local took
    took=$(since "$phase_start")
    phases+=("$(printf '%-30s %7s s' "$1" "$took")")
    log "$1: $took s"
    phase_start=$(date +%s.%N)
}

work=""
pids=() # started here, stopped in reverse order at exit
weed_pid=""
passed=false
cleanup() {
    local rc=$? stop_start
    stop_start=$(date +%s.%N)
    set +e
    # Only on the cluster started here, never on one a SLURM_CONF from outside points to.
    if [ -n "$work" ] && [ "${SLURM_CONF:-}" = "$work/slurm/slurm.conf" ]; then
        scancel --quiet --full --name=hashup-upload 2>/dev/null
    fi
    local i pid
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid=${pids[i]}
        kill "$pid" 2>/dev/null && for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    [ -z "$weed_pid" ] || "$repo/scripts/seaweedfs.sh" stop "$weed_pid"
    [ -z "$work" ] || log "stopped munged, Slurm and SeaweedFS in $(since "$stop_start") s"
    if [ -n "$work" ]; then
        if $passed; then
            rm -rf "$work"
        else
            log "kept $work (logs: slurm/*.log, jobs/hashup-*.log, weed/weed.log)"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- install ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
    ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        die "needs Slurm and munge: apt-get install slurm-wlm munge (as root)"
    fi
    log "installing slurm-wlm and munge (apt-get)..."
    # The packages' maintainer scripts would start system-wide daemons; a policy-rc.d that says
    # no keeps them from it (and is removed again if it was put here).
    policy=/usr/sbin/policy-rc.d
    made_policy=false
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=true
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_ok=true
    apt-get update -qq >/dev/null &&
        apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null || apt_ok=false
    ! $made_policy || rm -f "$policy"
    $apt_ok || die "apt-get install slurm-wlm munge failed"
fi
venv=$("$repo/scripts/seaweedfs.sh" install) || die "scripts/seaweedfs.sh install failed"
phase_done "install (apt, SeaweedFS)"

log "building hashup ($profile)..."
build=(cargo build --quiet --bin hashup)
[ "$profile" = debug ] || build+=(--profile "$profile")
(cd "$repo" && "${build[@]}") || die "cargo build failed"
binary=${CARGO_TARGET_DIR:-$repo/target}/$profile/hashup
[ -x "$binary" ] || die "no binary at $binary"
phase_done "build hashup"

# --- start munged, slurmctld, slurmd ----------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/hashup-slurm.XXXXXX")
chmod 755 "$work"
mkdir -p "$work/bin" "$work/munge" "$work/slurm/state" "$work/slurm/spool" "$work/jobs"
ln -s "$binary" "$work/bin/hashup"
export PATH=$work/bin:$PATH # the jobs inherit it: sbatch passes the environment on

# Free loopback ports; another process could take one before the daemon does, which the wait
# for the node below would catch.
read -r ctld_port slurmd_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')

log "starting munged..."
chmod 700 "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$work/munge/munge.key"
munge_socket=$work/munge/munge.socket
munged --foreground --force --key-file="$work/munge/munge.key" --socket="$munge_socket" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" \
    --seed-file="$work/munge/munged.seed" >"$work/munge/munged.out" 2>&1 </dev/null &
pids+=($!)
for _ in $(seq 100); do
    [ -S "$munge_socket" ] && munge -n -S "$munge_socket" | unmunge -S "$munge_socket" >/dev/null 2>&1 && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/munge/munged.out" >&2; die "munged exited"; }
    sleep 0.1
done
munge -n -S "$munge_socket" | unmunge -S "$munge_socket" >/dev/null || die "munge does not work"

cpus=$(nproc)
memory=$(awk '/^MemTotal:/ { print int($2 / 1024 / 2) }' /proc/meminfo) # MiB, half of it
export SLURM_CONF=$work/slurm/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=hashuptest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_socket
StateSaveLocation=$work/slurm/state
SlurmdSpoolDir=$work/slurm/spool
SlurmctldPidFile=$work/slurm/slurmctld.pid
SlurmdPidFile=$work/slurm/slurmd.pid
SlurmctldLogFile=$work/slurm/slurmctld.log
SlurmdLogFile=$work/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

log "starting slurmctld and slurmd (ports $ctld_port, $slurmd_port)..."
slurmctld -D -c -f "$SLURM_CONF" >"$work/slurm/slurmctld.out" 2>&1 </dev/null &
pids+=($!)
slurmd -D -N localhost -f "$SLURM_CONF" >"$work/slurm/slurmd.out" 2>&1 </dev/null &
pids+=($!)
state=""
for _ in $(seq 300); do
    state=$(sinfo --noheader --nodes=localhost --format=%T 2>/dev/null || true)
    [ "$state" = idle ] && break
    for pid in "${pids[@]}"; do
        kill -0 "$pid" 2>/dev/null || {
            tail -n 20 "$work"/slurm/*.log "$work"/slurm/*.out >&2
            die "a Slurm daemon exited (pid $pid)"
        }
    done
    sleep 0.2
done
[ "$state" = idle ] || {
    tail -n 20 "$work"/slurm/*.log >&2
    die "node localhost is '${state:-not known}' after 60 s, not idle"
}
phase_done "start munged, Slurm"

# --- SeaweedFS and the tree -------------------------------------------------------------------
export AWS_ACCESS_KEY_ID=hashuptest AWS_SECRET_ACCESS_KEY=hashuptestsecret
export AWS_REGION=us-east-1
log "starting SeaweedFS..."
SEAWEEDFS_BUCKETS=$bucket SEAWEEDFS_WATCH_PID=$$ "$repo/scripts/seaweedfs.sh" start "$work/weed" \
    >"$work/weed.out" || die "scripts/seaweedfs.sh start failed"
endpoint=$(sed -n 's/^endpoint=//p' "$work/weed.out")
weed_pid=$(sed -n 's/^pid=//p' "$work/weed.out")
if [ -z "$endpoint" ] || [ -z "$weed_pid" ]; then die "seaweedfs.sh start printed no endpoint or pid"; fi

# 40 files in nested directories: empty, tiny, around 4 KiB and the 4 MiB mapping threshold,
# and one of 12 MiB that goes in parts (--multipart-threshold 8MiB below).
tree=$work/tree
python3 - "$tree" <<'PY'
import os, random, sys
root = sys.argv[1]
rng = random.Random(12)
sizes = [0, 1, 4095, 4096, 4097, 65536, 1 << 20, (4 << 20) - 1, 4 << 20, (4 << 20) + 1, 12 << 20]
sizes += [rng.randrange(1, 300_000) for _ in range(40 - len(sizes))]
for i, size in enumerate(sizes):
    path = os.path.join(root, f"set{i % 4}", f"deep{i % 3}" if i % 2 else "", f"img-{i:02}.sif")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(rng.randbytes(size))
PY
upload_flags=(--s3 "s3://$bucket/$prefix" --endpoint "$endpoint" --multipart-threshold 8MiB)
phase_done "start SeaweedFS, make tree"

# --- the recipe -------------------------------------------------------------------------------
log "sbatch --array=0-$((tasks - 1)) --wait scripts/shard/slurm-array.sh ..."
# --cpus-per-task=1 overrides the recipe's 4, which a 2-CPU node cannot give.
sbatch_rc=0
(cd "$work/jobs" && timeout 600 sbatch --array=0-$((tasks - 1)) --cpus-per-task=1 --wait \
    "$repo/scripts/shard/slurm-array.sh" "$tree" "${upload_flags[@]}") >"$work/sbatch.out" 2>&1 ||
    sbatch_rc=$?
cat "$work/sbatch.out" >&2
phase_done "sbatch --wait ($tasks tasks)"
if [ "$sbatch_rc" != 0 ]; then
    for f in "$work"/jobs/hashup-*.log; do
        [ -e "$f" ] && { log "--- $f"; tail -n 15 "$f" >&2; }
    done
    fail "sbatch --wait exited $sbatch_rc (the highest exit status of the array's tasks)"
fi

# --- checks -----------------------------------------------------------------------------------
cd "$work/jobs"
shopt -s nullglob
manifests=(shard-*.jsonl)
[ "${#manifests[@]}" = "$tasks" ] || fail "expected $tasks shard manifests, found: ${manifests[*]:-none}"
hashup upload "$tree" "${upload_flags[@]}" --dry-run >"$work/expected.txt" 2>"$work/dry-run.err" ||
    fail "hashup upload --dry-run failed: $(cat "$work/dry-run.err")"
merge_rc=0
hashup manifest merge "${manifests[@]}" --expect "$work/expected.txt" -o "$work/merged.jsonl" \
    2>"$work/merge.err" || merge_rc=$?
cat "$work/merge.err" >&2
[ "$merge_rc" = 0 ] || fail "hashup manifest merge exited $merge_rc"

ENDPOINT=$endpoint BUCKET=$bucket "$venv/bin/python" - "$tree" "$prefix" "$tasks" "$work/merged.jsonl" "${manifests[@]}" <<'PY' ||
import hashlib, json, os, sys
import boto3

tree, prefix, tasks, merged_path, *manifests = sys.argv[1:]
tasks = int(tasks)
errors = []

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

files = {}
for dirpath, _, names in os.walk(tree):
    for n in names:
        path = os.path.join(dirpath, n)
        files[os.path.relpath(path, tree)] = (os.path.getsize(path), sha256(path))

def records(path):
    out, summary = [], None
    for line in open(path):
        value = json.loads(line)
        if "summary" in value:
            summary = value["summary"]
        elif "status" in value:  # a file's record; the others journal multipart uploads
            out.append(value)
    return out, summary

# Each file in exactly one shard, uploaded, and in the shard its name hashes to with N = tasks
# (the contract of --shard: the first 8 bytes of SHA-256(name), big-endian, modulo N).
seen = {}
for path in manifests:
    k = int(path.removeprefix("shard-").removesuffix(".jsonl"))
    recs, summary = records(path)
    if summary is None:
        errors.append(f"{path}: no summary line (the task did not finish)")
    for r in recs:
        name = r["name"]
        seen.setdefault(name, []).append(path)
        if r["status"] != "uploaded":
            errors.append(f"{path}: {name} is {r['status']}: {r.get('error')}")
        want = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % tasks
        if want != k:
            errors.append(f"{path}: {name} belongs to shard {want} of {tasks}")
        if name in files and (r["size"], r["sha256"]) != files[name]:
            errors.append(f"{path}: {name} recorded as {r['size']} {r['sha256']}, file is {files[name]}")
for name, where in seen.items():
    if len(where) != 1:
        errors.append(f"{name} is in {len(where)} shard manifests: {where}")
if set(seen) != set(files):
    errors.append(f"the shards miss {sorted(set(files) - set(seen))}, "
                  f"and have extra {sorted(set(seen) - set(files))}")

recs, summary = records(merged_path)
if sorted(r["name"] for r in recs) != sorted(files):
    errors.append("the merged manifest's names are not the tree's")
if not summary or summary.get("files") != len(files) or summary.get("uploaded") != len(files):
    errors.append(f"merged summary {summary} is not {len(files)} files, all uploaded")

# The bucket: exactly the tree under the prefix, sizes and the SHA-256 metadata matching.
s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
bucket = os.environ["BUCKET"]
listed = {}
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for obj in page.get("Contents", []):
        listed[obj["Key"]] = obj["Size"]
want = {f"{prefix}/{name}": size for name, (size, _) in files.items()}
if listed != want:
    missing = sorted(set(want) - set(listed))
    extra = sorted(set(listed) - set(want))
    wrong = sorted(k for k in set(want) & set(listed) if want[k] != listed[k])
    errors.append(f"bucket listing differs: missing {missing}, extra {extra}, wrong size {wrong}")
for name, (size, digest) in files.items():
    key = f"{prefix}/{name}"
    if key not in listed:
        continue
    meta = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})
    if meta.get("prominence_sha256") != digest:
        errors.append(f"{key}: prominence_sha256 {meta.get('prominence_sha256')!r}, file {digest}")

for e in errors:
    print(f"test-slurm: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"test-slurm: {len(files)} files, {sum(s for s, _ in files.values())} bytes: each in one of "
      f"{tasks} shards, merged clean, stored once with matching size and SHA-256", file=sys.stderr)
PY
    fail "the stored objects or the manifests are not the tree, each file once (above)"
phase_done "checks"

# --- the recipe's other two ways of being submitted -------------------------------------------
# A task run again on its own, as the recipe's comment says: HASHUP_SHARDS gives N, and the
# task uploads the same files as the first time.
again=$((tasks / 2))
mkdir "$work/again" "$work/misfit"
(cd "$work/again" && timeout 300 sbatch --array="$again" --export="ALL,HASHUP_SHARDS=$tasks" \
    --cpus-per-task=1 --wait "$repo/scripts/shard/slurm-array.sh" "$tree" "${upload_flags[@]}") \
    >"$work/again.out" 2>&1 || fail "sbatch --array=$again again: $(cat "$work/again.out")"
names() { "$venv/bin/python" -c '
import json, sys
print(*sorted(r["name"] for r in map(json.loads, open(sys.argv[1])) if "status" in r), sep="\n")' "$1"; }
[ "$(names "$work/again/shard-$again.jsonl")" = "$(names "$work/jobs/shard-$again.jsonl")" ] ||
    fail "shard $again run again (HASHUP_SHARDS=$tasks) did not upload the files it did the first time"
# An array that does not run 0..N-1 stops every task before it reads a file.
misfit_rc=0
(cd "$work/misfit" && timeout 300 sbatch --array=1-$tasks --cpus-per-task=1 --wait \
    "$repo/scripts/shard/slurm-array.sh" "$tree" "${upload_flags[@]}") >"$work/misfit.out" 2>&1 ||
    misfit_rc=$?
[ "$misfit_rc" = 2 ] || fail "sbatch --array=1-$tasks exited $misfit_rc, not 2: $(cat "$work/misfit.out")"
want="slurm-array.sh: the array runs 1-$tasks in $tasks tasks; shards need --array=0-(N-1), or HASHUP_SHARDS=N to run some of N shards again"
for ((k = 1; k <= tasks; k++)); do
    got=$(cat "$work"/misfit/hashup-*_"$k".log)
    [ "$got" = "$want" ] || fail "task $k of --array=1-$tasks said '$got', not '$want'"
done
[ -z "$(find "$work/misfit" -name 'shard-*')" ] || fail "--array=1-$tasks wrote manifests"
phase_done "re-run a shard, misfit array"

passed=true
log "PASSED in $(since "$start_time") s"
printf '  %s\n' "${phases[@]}" >&2
