# Helpers shared by the scripts/bench-*.sh scripts; source it, do not run it.
# The Linux guest is the one of scripts/linux-guest.sh: its /init prints
# HX86-GUEST-READY once booted, runs hx86.cmd=..., prints HX86-GUEST-DONE
# and powers off.

# Builds (or reuses) the Linux guest in target/linux-guest; sets $linux_guest.
bench_linux_guest() {
    linux_guest=target/linux-guest
    scripts/linux-guest.sh "$linux_guest" >/dev/null
}

# measure DONE CMD...: runs CMD once (stdin closed, killed after 600 s) and
# prints four fields:
#   <s to HX86-GUEST-READY> <s to exit> <status> <in-guest s>
# status is the exit status, or -1 when the output lacks the text DONE (or
# the run timed out); the in-guest time is the difference of the numbers
# after HX86-UPTIME-A and HX86-UPTIME-B (e.g. `echo HX86-UPTIME-A
# $(cat /proc/uptime)` in the guest). A field that does not apply is -1.
measure() {
    python3 - "$@" <<'PY'
import re, subprocess, sys, time
done = sys.argv[1].encode()
t0 = time.monotonic()
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL,
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
marker = None
buf = b""
deadline = t0 + 600
timed_out = False
while True:
    chunk = p.stdout.read1(4096)
    if not chunk:
        break
    buf += chunk
    if marker is None and b"HX86-GUEST-READY" in buf:
        marker = time.monotonic() - t0
    if time.monotonic() > deadline:
        p.kill()
        timed_out = True
        break
rc = p.wait()
total = time.monotonic() - t0
ok = done in buf and not timed_out
up = {}
for k in (b"A", b"B"):
    m = re.search(rb"HX86-UPTIME-" + k + rb" ([0-9.]+)", buf)
    up[k] = float(m.group(1)) if m else None
guest = up[b"B"] - up[b"A"] if None not in up.values() else -1
print("%.2f %.2f %d %.2f" % (marker if marker is not None else -1, total,
                             rc if ok else -1, guest))
PY
}

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# run_many RUNS DONE CMD...: `measure DONE CMD...` RUNS times; prints the
# median of each of its fields except the status, i.e.
#   <s to marker> <s to exit> <in-guest s>
# or "-1 -1 -1" when a run failed (status -1).
run_many() {
    local runs="$1"; shift
    local out=()
    for _ in $(seq "$runs"); do
        local m tot rc g
        read -r m tot rc g < <(measure "$@")
        if [ "$rc" = -1 ]; then echo "-1 -1 -1"; return; fi
        out+=("$m $tot $g")
    done
    local f
    for f in 1 2 3; do
        printf '%s\n' "${out[@]}" | awk -v f="$f" '{print $f}' | median
    done | paste -sd' '
}

# ratio A B: A/B with two decimals, "-" when either is missing (-1 or -).
ratio() {
    case "$1 $2" in
        *-*) echo "-" ;;
        *) awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f\n", a / b }' ;;
    esac
}
