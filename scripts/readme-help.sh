#!/usr/bin/env bash
# Rewrites the README's usage blocks (a fenced block starting `$ hashup ... --help`) with what
# the binary prints now. tests/readme checks they match, word for word.
#
#   scripts/readme-help.sh        builds hashup (debug) and rewrites README.md in place
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --quiet --bin hashup
python3 - "${CARGO_TARGET_DIR:-$repo/target}/debug/hashup" README.md <<'PY'
import subprocess, sys
binary, path = sys.argv[1], sys.argv[2]
lines = open(path).read().split("\n")
out, i = [], 0
while i < len(lines):
    line = lines[i]
    out.append(line)
    i += 1
    if line.startswith("$ hashup ") and line.endswith("--help"):
        args = line[len("$ hashup "):].split()
        help = subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout
        out.extend(l.rstrip() for l in help.rstrip("\n").split("\n"))
        while lines[i] != "```":
            i += 1
open(path, "w").write("\n".join(out))
PY
