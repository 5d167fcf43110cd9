#!/usr/bin/env bash
# Release archives of hashup, cross-built on Linux with cargo-zigbuild (zig as the C compiler
# and linker: no Xcode, no musl toolchain).
#
#   scripts/dist.sh [--check | --dev] [TARGET...]
#
# TARGETs default to the four released ones:
#   x86_64-unknown-linux-musl   aarch64-unknown-linux-musl   (static: run on any Linux)
#   x86_64-apple-darwin         aarch64-apple-darwin         (macOS 11 and later)
# Writes into dist/ (or $DIST_DIR), named from Cargo.toml's version:
#   hashup-VERSION-TARGET.tar.gz   holding hashup-VERSION-TARGET/{hashup,README.md}
#   SHA256SUMS                     GNU format, which `hashup hash -c SHA256SUMS` checks
# The archive adds nothing that varies: fixed file order, owner and mtime (the last commit's
# time), gzip without a name or time stamp. (Whether the binaries themselves come out
# byte-identical from two builds has not been checked.)
# --check only type-checks each target (`cargo-zigbuild check`: no code, no link, no archive).
# --dev builds the dev profile (no optimisation, no LTO: minutes faster) into dist/dev: what
# CI runs, then scripts/dist-test.sh checks the archives. Never release those.
#
# Exits 3 when a Rust target cannot be installed (no route to rustup's server), 1 on any other
# failure. What it installs, once: the Rust targets (rustup), cargo-zigbuild (crates.io, into
# .cache/tools) and zig (PyPI's ziglang, into .cache/zig-venv).
#
# macOS without Xcode: the binary links against two system frameworks, Security and
# CoreFoundation (through rustls's platform verifier). Their text stubs (.tbd, the form Apple's
# own SDK ships) are written here with only the symbols hashup uses, so the linker can record
# the dependency; the real frameworks resolve them at run time on the Mac. If a dependency starts
# using another symbol, the link fails naming it: add it to the lists below.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out=${DIST_DIR:-$repo/dist}
check=0
profile=release
case ${1:-} in
--check) check=1 && shift ;;
--dev) profile=dev && out=${DIST_DIR:-$repo/dist/dev} && shift ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl x86_64-apple-darwin aarch64-apple-darwin)

log() { printf 'dist: %s\n' "$*" >&2; }

version=$(awk -F'"' '/^version *=/ {print $2; exit}' Cargo.toml)
[ -n "$version" ] || { log "no version in Cargo.toml"; exit 1; }

# --- tools ------------------------------------------------------------------------------------
zigbuild_version=0.24.1
ziglang_version=0.17.1
tools=$repo/.cache/tools
zigvenv=$repo/.cache/zig-venv
if [ ! -x "$tools/bin/cargo-zigbuild" ] || ! "$tools/bin/cargo-zigbuild" --version | grep -q "$zigbuild_version"; then
    log "installing cargo-zigbuild $zigbuild_version into $tools..."
    cargo install --quiet --locked --root "$tools" cargo-zigbuild --version "$zigbuild_version"
fi
if [ ! -x "$zigvenv/bin/python-zig" ]; then
    log "installing zig (PyPI ziglang $ziglang_version) into $zigvenv..."
    python3 -m venv "$zigvenv"
    "$zigvenv/bin/pip" install --quiet "ziglang==$ziglang_version"
fi
export PATH="$tools/bin:$zigvenv/bin:$PATH"
installed=$(rustup target list --installed)
for target in "${targets[@]}"; do
    if ! grep -qx "$target" <<<"$installed"; then
        log "adding Rust target $target..."
        if ! rustup target add "$target" >/dev/null; then
            log "cannot add Rust target $target (rustup needs static.rust-lang.org)"
            exit 3
        fi
    fi
done

# --- macOS framework stubs ----------------------------------------------------------------------
security_symbols=(
    _SecCertificateCopySubjectSummary _SecCertificateCreateWithData _SecCopyErrorMessageString
    _SecPolicyCreateSSL _SecTrustCreateWithCertificates _SecTrustEvaluateWithError
    _SecTrustSetAnchorCertificates _SecTrustSetAnchorCertificatesOnly _SecTrustSetOCSPResponse
    _SecTrustSetVerifyDate
)
corefoundation_symbols=(
    _CFArrayCreate _CFDataCreate _CFDateCreate _CFErrorCopyDescription _CFErrorGetCode
    _CFRelease _CFStringCreateWithBytes _CFStringGetBytes _CFStringGetCStringPtr
    _CFStringGetLength _kCFAbsoluteTimeIntervalSince1970 _kCFAllocatorDefault
    _kCFTypeArrayCallBacks
)
sdk=$repo/.cache/macos-sdk-stubs
stub() {
    local name=$1
    shift
    local dir=$sdk/System/Library/Frameworks/$name.framework
    mkdir -p "$dir"
    {
        echo "--- !tapi-tbd"
        echo "tbd-version:     4"
        echo "targets:         [ x86_64-macos, arm64-macos ]"
        echo "install-name:    '/System/Library/Frameworks/$name.framework/Versions/A/$name'"
        echo "exports:"
        echo "  - targets:         [ x86_64-macos, arm64-macos ]"
        echo "    symbols:         [ $(IFS=,; echo "$*" | sed 's/,/, /g') ]"
        echo "..."
    } >"$dir/$name.tbd"
}
stub Security "${security_symbols[@]}"
stub CoreFoundation "${corefoundation_symbols[@]}"
mkdir -p "$sdk/usr/lib" "$sdk/usr/include"

# --- build ----------------------------------------------------------------------------------
# cargo-zigbuild SUBCOMMAND TARGET ARGS...: with the stub SDK for macOS targets.
zig_cargo() {
    local sub=$1 target=$2
    shift 2
    case $target in
    *-apple-darwin) SDKROOT=$sdk cargo-zigbuild "$sub" --locked --quiet --target "$target" "$@" ;;
    *) cargo-zigbuild "$sub" --locked --quiet --target "$target" "$@" ;;
    esac
}

if [ "$check" = 1 ]; then
    for target in "${targets[@]}"; do
        log "checking $target..."
        zig_cargo check "$target" --bins --lib
    done
    log "checked: ${targets[*]}"
    exit 0
fi

mkdir -p "$out"
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
archives=()
for target in "${targets[@]}"; do
    log "building $target ($profile)..."
    zig_cargo zigbuild "$target" --profile "$profile" --bin hashup
    name=hashup-$version-$target
    stage=$(mktemp -d "$out/.stage.XXXXXX")
    mkdir "$stage/$name"
    dir=release
    [ "$profile" = dev ] && dir=debug
    cp "${CARGO_TARGET_DIR:-target}/$target/$dir/hashup" "$stage/$name/hashup"
    cp README.md "$stage/$name/README.md"
    chmod 0755 "$stage/$name/hashup"
    chmod 0644 "$stage/$name/README.md"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
        -C "$stage" -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"
    rm -rf "$stage"
    archives+=("$name.tar.gz")
    log "wrote $out/$name.tar.gz"
done
(cd "$out" && sha256sum "${archives[@]}" >SHA256SUMS)
log "wrote $out/SHA256SUMS"
(cd "$out" && cat SHA256SUMS)
