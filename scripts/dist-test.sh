#!/usr/bin/env bash
# Checks what scripts/dist.sh wrote into DIR (default dist/):
#   - SHA256SUMS holds every archive, and `hashup hash -c SHA256SUMS` (the static binary's own,
#     when there is one for this machine) says OK;
#   - each archive unpacks to hashup-VERSION-TARGET/{hashup,README.md}, VERSION from Cargo.toml;
#   - each binary is for its target (ELF x86-64 / AArch64, Mach-O x86-64 / arm64);
#   - the Linux binary for this machine is static (ldd says so) and runs from an empty
#     directory with an empty environment: --version, and a SHA-256 that sha256sum agrees with.
#
#   scripts/dist-test.sh [DIR]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
dir=$(cd "${1:-$repo/dist}" && pwd)
version=$(awk -F'"' '/^version *=/ {print $2; exit}' "$repo/Cargo.toml")
fail() {
    printf 'dist-test: FAILED: %s\n' "$*" >&2
    exit 1
}
say() { printf 'dist-test: %s\n' "$*" >&2; }

[ -s "$dir/SHA256SUMS" ] || fail "no $dir/SHA256SUMS"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The bytes at OFFSET (hex, LEN bytes) of FILE.
bytes() { od -An -tx1 -j "$2" -N "$3" "$1" | tr -d ' \n'; }

native=
count=0
while read -r sum archive; do
    count=$((count + 1))
    target=${archive#hashup-"$version"-}
    target=${target%.tar.gz}
    [ "$archive" = "hashup-$version-$target.tar.gz" ] || fail "$archive is not named hashup-$version-TARGET.tar.gz"
    mkdir "$work/$target"
    tar -xzf "$dir/$archive" -C "$work/$target"
    listing=$(cd "$work/$target" && find . -mindepth 1 | sort | tr '\n' ' ')
    expected="./hashup-$version-$target ./hashup-$version-$target/README.md ./hashup-$version-$target/hashup "
    [ "$listing" = "$expected" ] || fail "$archive holds: $listing"
    bin=$work/$target/hashup-$version-$target/hashup
    case $target in
    x86_64-unknown-linux-*) want=7f454c46:3e00 ;;
    aarch64-unknown-linux-*) want=7f454c46:b700 ;;
    x86_64-apple-darwin) want=cffaedfe:07000001 ;;
    aarch64-apple-darwin) want=cffaedfe:0c000001 ;;
    *) fail "$archive: unknown target $target" ;;
    esac
    case $want in
    7f454c46:*) got=$(bytes "$bin" 0 4):$(bytes "$bin" 18 2) ;;
    *) got=$(bytes "$bin" 0 4):$(bytes "$bin" 4 4) ;;
    esac
    [ "$got" = "$want" ] || fail "$archive: hashup is not a $target binary (magic and machine $got, want $want)"
    say "$archive: a $target binary, $(stat -c %s "$bin") bytes"
    if [ "$target" = "$(uname -m)-unknown-linux-musl" ]; then
        native=$bin
    fi
done <"$dir/SHA256SUMS"
[ "$count" -gt 0 ] || fail "SHA256SUMS lists no archive"
[ "$(find "$dir" -maxdepth 1 -name '*.tar.gz' | wc -l)" = "$count" ] || fail "SHA256SUMS does not list every archive in $dir"

if [ -z "$native" ]; then
    say "no static Linux binary for $(uname -m) among them: the run checks are skipped"
    checker=("$repo/target/debug/hashup")
    [ -x "${checker[0]}" ] || checker=(cargo run --quiet --manifest-path "$repo/Cargo.toml" --)
else
    # ldd exits 1 for a static binary: its words are what count.
    linked=$(ldd "$native" 2>&1 || true)
    grep -Eq 'not a dynamic executable|statically linked' <<<"$linked" || fail "ldd: $linked"
    say "ldd: $(head -1 <<<"$linked" | sed 's/^[[:space:]]*//')"
    empty=$work/empty
    mkdir "$empty"
    cp "$native" "$empty/hashup"
    printf 'hello from a clean directory\n' >"$empty/file.txt"
    got=$(cd "$empty" && env -i ./hashup --version)
    [ "$got" = "hashup $version" ] || fail "--version printed: $got"
    got=$(cd "$empty" && env -i ./hashup hash file.txt)
    want=$(cd "$empty" && sha256sum file.txt)
    [ "$got" = "$want" ] || fail "hash printed '$got', sha256sum '$want'"
    say "the static binary runs from an empty directory with an empty environment: $got"
    checker=("$native")
fi
(cd "$dir" && "${checker[@]}" hash -c SHA256SUMS) || fail "hashup hash -c SHA256SUMS"
say "OK: $count archives"
