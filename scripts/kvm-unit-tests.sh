#!/usr/bin/env bash
# Runs kvm-unit-tests' own runner (run_tests.sh) with hx86 in QEMU's place
# (QEMU=<hx86> ACCEL=tcg, i.e. the DBT) and prints its PASS/FAIL/SKIP
# counts, optionally next to a reference run of QEMU on the same machine.
#
# The suite comes from the pinned tarball in ../shared/peers (see its
# README); it is extracted and built (gcc, make) in a temporary directory,
# or in -w DIR, which is kept and reused on the next run.
#
# usage: scripts/kvm-unit-tests.sh [-b HX86] [-w DIR] [-r REF.txt] [-j N]
#                                  [-e NAME=VALUE]... [-t TIMEOUT]
#                                  [--expect-pass] [TEST...]
#   -b HX86        the hx86 binary (default target/release/hx86)
#   -w DIR         work directory (default: a temporary one, removed)
#   -r REF.txt     the output of `ACCEL=tcg ./run_tests.sh` with QEMU, to
#                  print a table test | QEMU | hx86
#   -j N           tests run in parallel (default 1)
#   -e NAME=VALUE  an environment variable for the tests (the suite's own
#                  KVM_UNIT_TESTS_ENV file): e.g. TEST_DEVICE=0 turns off the
#                  apic test's KVM-only PV-IPI hypercall (VMCALL, #UD on a
#                  CPU without VMX, as under QEMU TCG)
#   -t TIMEOUT     every test's timeout (the runner's TIMEOUT, e.g. 600s),
#                  instead of unittests.cfg's (30-90 s, meant for KVM): CI
#                  sets it so that a loaded machine is not a failure
#   --expect-pass  exit 1 unless every test run PASSes (CI)
#   TEST...        only these tests (names of x86/unittests.cfg); default:
#                  the whole suite
# KUT_TARBALL overrides where the tarball is.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
hx86=$repo/target/release/hx86
work=
ref=
jobs=1
expect=0
tests=()
envs=()
while [ $# -gt 0 ]; do
    case $1 in
    -b) hx86=$(realpath "$2"); shift 2 ;;
    -w) work=$2; shift 2 ;;
    -r) ref=$(realpath "$2"); shift 2 ;;
    -j) jobs=$2; shift 2 ;;
    -e) envs+=("$2"); shift 2 ;;
    -t) export TIMEOUT=$2; shift 2 ;;
    --expect-pass) expect=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "kvm-unit-tests.sh: unknown option $1 (see -h)" >&2; exit 2 ;;
    *) tests+=("$1"); shift ;;
    esac
done

tarball=${KUT_TARBALL:-}
if [ -z "$tarball" ]; then
    for d in "$repo/../shared/peers" "$repo/../../shared/peers"; do
        for f in "$d"/kvm-unit-tests-*.tar.gz; do
            [ -f "$f" ] && tarball=$f
        done
        [ -n "$tarball" ] && break
    done
fi
if [ -z "$tarball" ] || [ ! -f "$tarball" ]; then
    echo "kvm-unit-tests.sh: the kvm-unit-tests tarball is not in ../shared/peers (set KUT_TARBALL)" >&2
    exit 2
fi
if [ ! -x "$hx86" ]; then
    echo "kvm-unit-tests.sh: $hx86 not found: cargo build --release first" >&2
    exit 2
fi
for tool in gcc make; do
    command -v $tool >/dev/null || { echo "kvm-unit-tests.sh: needs $tool" >&2; exit 2; }
done

if [ -z "$work" ]; then
    work=$(mktemp -d -t hx86-kut.XXXXXX)
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
work=$(realpath "$work")
src=$work/kvm-unit-tests
if [ ! -f "$src/config.mak" ]; then
    tar xzf "$tarball" -C "$work"
    (cd "$src" && ./configure --arch=x86_64 >/dev/null)
fi

# Build the whole suite, or only the named tests' images.
targets=()
for t in "${tests[@]}"; do
    f=$(awk -v t="$t" '/^\[/ { sec = substr($0, 2, length($0) - 2) }
                       sec == t && /^file *=/ { print $3 }' "$src/x86/unittests.cfg")
    if [ -z "$f" ]; then
        echo "kvm-unit-tests.sh: no test '$t' in x86/unittests.cfg" >&2
        exit 2
    fi
    targets+=("x86/$f")
done
make -C "$src" -s -j"$(nproc)" "${targets[@]}" >"$work/build.log" 2>&1 || {
    tail -20 "$work/build.log" >&2
    echo "kvm-unit-tests.sh: the build failed (log: $work/build.log)" >&2
    exit 2
}

out=$work/hx86-run.txt
if [ ${#envs[@]} -gt 0 ]; then
    printf '%s\n' "${envs[@]}" >"$work/env"
    export KVM_UNIT_TESTS_ENV=$work/env
else
    unset KVM_UNIT_TESTS_ENV
fi
(cd "$src" && QEMU=$hx86 ACCEL=tcg ./run_tests.sh -j "$jobs" "${tests[@]}") | tee "$out" || true

plain() { sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -E '^(PASS|FAIL|SKIP) '; }
count() { plain "$1" | awk '{ n[$1]++ } END { printf "PASS %d, FAIL %d, SKIP %d\n", n["PASS"], n["FAIL"], n["SKIP"] }'; }

echo
echo "hx86: $(count "$out")"
if [ -n "$ref" ]; then
    echo "QEMU: $(count "$ref") (reference run)"
    echo
    echo "| test | QEMU | hx86 |"
    echo "|---|---|---|"
    # Tests in the reference's order, then any only hx86 ran.
    awk 'NR == FNR { q[$2] = $1; order[++n] = $2; next }
         { $1 = $1; st = $1; name = $2; $1 = ""; $2 = ""; sub(/^ +/, ""); h[name] = st ($0 != "" ? " " $0 : "");
           if (!(name in q)) extra[++m] = name }
         END {
           for (i = 1; i <= n; i++) { t = order[i]; if (t in h) printf "| %s | %s | %s |\n", t, q[t], h[t] }
           for (i = 1; i <= m; i++) printf "| %s | - | %s |\n", extra[i], h[extra[i]]
         }' <(plain "$ref") <(plain "$out")
fi

if [ "$expect" = 1 ]; then
    bad=$(plain "$out" | awk '$1 != "PASS"' || true)
    ran=$(plain "$out" | wc -l)
    if [ -n "$bad" ] || [ "$ran" -eq 0 ]; then
        echo "kvm-unit-tests.sh: expected every test to pass:" >&2
        echo "${bad:-no test ran}" >&2
        for t in $(echo "$bad" | awk '{ print $2 }'); do
            [ -f "$src/logs/$t.log" ] && { echo "--- $t.log" >&2; tail -30 "$src/logs/$t.log" >&2; }
        done
        exit 1
    fi
fi
