#!/usr/bin/env python3
"""Measures ossup against the "Ship to ARM gateways" budgets. Started by tests/bench/budgets.sh
(see there); standard library only.

Prints PASS or MISS for each budget and never fails on a MISS (this is a benchmark, not a
test); exits non-zero only if a measurement could not be made.
"""

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

MiB = 1 << 20
AK, SK = "budget-id", "budget-secret"
BUCKET = "budget"
CHILDREN = []


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def start_serve(a, name, tls):
    store = os.path.join(a.work, "store-" + name)
    path = os.path.join(a.work, "serve-%s.out" % name)
    argv = [a.bin, "serve", store, "--listen", "127.0.0.1:0", "--bucket", BUCKET]
    if tls:
        argv += ["--tls-cert", a.cert, "--tls-key", a.key]
    env = dict(os.environ, OSS_ACCESS_KEY_ID=AK, OSS_ACCESS_KEY_SECRET=SK)
    p = subprocess.Popen(argv, env=env, stdout=open(path, "wb"), stderr=subprocess.DEVNULL,
                         start_new_session=True)
    CHILDREN.append(p)
    end = time.monotonic() + 30
    while time.monotonic() < end and p.poll() is None:
        with open(path) as f:
            m = re.search(r"listening on (https?://[0-9.:]+)", f.read())
        if m:
            return m.group(1)
        time.sleep(0.05)
    raise SystemExit("budgets: ossup serve (%s) did not start" % name)


def stats(endpoint):
    with urllib.request.urlopen(endpoint + "/_ossup/stats", timeout=10) as r:
        return json.loads(r.read())


def upload_argv(a, endpoint, path, key, ckpt, jobs, part="8MiB", threshold="8MiB", extra=()):
    argv = [a.bin, "upload", path, "oss://%s/%s" % (BUCKET, key), "--endpoint", endpoint,
            "--region", "cn-hangzhou", "--part-size", part, "--threshold", threshold,
            "--jobs", str(jobs), "--checkpoint-dir", ckpt, "-q"]
    if endpoint.startswith("https"):
        argv += ["--ca-file", a.cert]
    return argv + list(extra)


ENV = None


def spawn(argv, **kw):
    """Starts `argv` in its own process group (so that GNU time's or strace's child is never
    left behind) and remembers it for the cleanup."""
    p = subprocess.Popen(argv, env=ENV, start_new_session=True, **kw)
    CHILDREN.append(p)
    return p


def run(argv):
    p = spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        raise SystemExit("budgets: %s did not finish within 900 s" % argv[0])
    CHILDREN.remove(p)
    if p.returncode != 0:
        raise SystemExit("budgets: %s exited %d: %s"
                         % (argv[0], p.returncode, err.decode(errors="replace")[-800:]))


def make_file(path, mib):
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))


def verdict(ok):
    return "PASS" if ok else "MISS"


def rss_budget(a, tls_ep, big):
    print("== 1. peak RSS: %d MiB upload, 8 MiB parts, TLS, to ossup serve (%d runs each)"
          % (a.size_mib, a.reps))
    arch = platform.machine()
    if arch != "x86_64":
        print("   (the budgets are for x86_64; this machine is %s)" % arch)
    results = {}
    for jobs, budget in ((1, 4.0), (4, 6.0)):
        rss = []
        for i in range(a.reps):
            ckpt = os.path.join(a.work, "ckpt-rss-%d-%d" % (jobs, i))
            tfile = os.path.join(a.work, "time")
            run(["/usr/bin/time", "-f", "%M", "-o", tfile]
                + upload_argv(a, tls_ep, big, "rss-%d-%d.bin" % (jobs, i), ckpt, jobs))
            with open(tfile) as f:
                rss.append(int(f.read().split()[-1]) / 1024)
        peak = max(rss)
        results[jobs] = peak
        print("   --jobs %d: peak RSS %.2f MiB (max of %s), median %.2f MiB; budget <= %.0f MiB: %s"
              % (jobs, peak, ", ".join("%.2f" % r for r in rss), statistics.median(rss), budget,
                 verdict(peak <= budget)))
    return results


RE_CALL = re.compile(r"^(\d+)\s+(\w+)\((\d+)<([^>]*)>.*\)\s+=\s+(-?\d+)")
RE_UNFINISHED = re.compile(r"^(\d+)\s+(\w+)\((\d+)<([^>]*)>.*<unfinished \.\.\.>$")
RE_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>.*\)\s+=\s+(-?\d+)")
WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}
SYNCS = {"fsync", "fdatasync"}


def trace_calls(path):
    """(call, fd path, return value) for every completed call in an `strace -f -y` log."""
    pending = {}
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            m = RE_CALL.match(line)
            if m:
                yield m.group(2), m.group(4), int(m.group(5))
                continue
            m = RE_UNFINISHED.match(line)
            if m:
                pending[m.group(1)] = (m.group(2), m.group(4))
                continue
            m = RE_RESUMED.match(line)
            if m and m.group(1) in pending:
                call, fdpath = pending.pop(m.group(1))
                yield call, fdpath, int(m.group(3))


def strace_c_counts(path):
    """calls per syscall from an `strace -c` summary."""
    counts = {}
    with open(path) as fh:
        for line in fh:
            f = line.split()
            if len(f) >= 5 and f[-1] in SYNCS and f[3].isdigit():
                counts[f[-1]] = int(f[3])
    return counts


def journal_budget(a, plain_ep, big):
    parts = -(-a.size_mib // 8)
    print("== 2. checkpoint journal: %d MiB upload, 8 MiB parts = %d parts, HTTP" % (a.size_mib, parts))
    seccomp = ["--seccomp-bpf"] if a.seccomp else []
    for jobs in (1, 4):
        ckpt = os.path.join(a.work, "ckpt-journal-%d" % jobs)
        trace = os.path.join(a.work, "trace-%d" % jobs)
        run(["strace", "-f"] + seccomp + ["-qq", "-y", "-e",
             "trace=write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync", "-o", trace]
            + upload_argv(a, plain_ep, big, "journal-%d.bin" % jobs, ckpt, jobs))
        journal_writes, header, other_ckpt, syncs, journal_syncs = [], 0, 0, 0, 0
        prefix = os.path.realpath(ckpt) + "/"
        for call, fdpath, ret in trace_calls(trace):
            if call in SYNCS:
                syncs += 1
                if fdpath.endswith(".ossup"):
                    journal_syncs += 1
            elif call in WRITES and ret > 0 and fdpath.startswith(prefix):
                if fdpath.endswith(".ossup.tmp"):
                    header += ret
                elif fdpath.endswith(".ossup"):
                    journal_writes.append(ret)
                else:
                    other_ckpt += ret
        journal_total = header + sum(journal_writes)
        summary = os.path.join(a.work, "strace-c-%d" % jobs)
        run(["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", summary]
            + upload_argv(a, plain_ep, big, "journal-c-%d.bin" % jobs,
                          os.path.join(a.work, "ckpt-c-%d" % jobs), jobs))
        c = strace_c_counts(summary)
        c_total = sum(c.values())
        # One PartDone record per part, plus a few per upload (Started, Completing, ...): the
        # median appended record is the per-part record.
        print("   --jobs %d: journal %d bytes written = header %d (temp file, renamed) + %d appended "
              "records (median %s bytes)"
              % (jobs, journal_total, header, len(journal_writes),
                 "%g" % statistics.median(journal_writes) if journal_writes else "-"))
        print("             = %.1f journal bytes per part in all; lock and probe files %d bytes"
              % (journal_total / parts, other_ckpt))
        print("             fsyncs: %d on the journal while appending, %d in all (strace -c: %s) "
              "= %.2f per part (%d parts)"
              % (journal_syncs, syncs, ", ".join("%s %d" % kv for kv in sorted(c.items())) or "none",
                 c_total / parts, parts))


def journal_10k(a):
    print("== 2b. journal of a 10,000-part upload (real encoder: cargo test --test bench_journal)")
    if not a.journal_log or not os.path.exists(a.journal_log):
        print("   (not run)")
        return
    with open(a.journal_log) as f:
        for line in f:
            if re.match(r"^(journal header|PartDone record|10,000-part journal)", line):
                print("   " + line.rstrip())


def journal_real(a, plain_ep):
    n = a.real_parts
    print("== 2c. a real %d-part upload: %d x 100 KiB, --jobs 4, HTTP, under strace -y" % (n, n))
    path = os.path.join(a.work, "parts.bin")
    with open(path, "wb") as f:
        for _ in range(n):
            f.write(os.urandom(102400))
    ckpt = os.path.join(a.work, "ckpt-real")
    trace = os.path.join(a.work, "trace-real")
    seccomp = ["--seccomp-bpf"] if a.seccomp else []
    t0 = time.monotonic()
    run(["strace", "-f"] + seccomp + ["-qq", "-y", "-e",
         "trace=write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync", "-o", trace]
        + upload_argv(a, plain_ep, path, "parts.bin", ckpt, 4, part="100KiB", threshold="1MiB"))
    wall = time.monotonic() - t0
    journal, syncs = 0, 0
    for call, fdpath, ret in trace_calls(trace):
        if call in SYNCS:
            syncs += 1
        elif call in WRITES and ret > 0 and re.search(r"\.ossup(\.tmp)?$", fdpath):
            journal += ret
    os.remove(path)
    os.remove(trace)
    # The journal is append-only after its header, so the bytes written are its size just
    # before the completed upload deletes it.
    print("   journal %d bytes (%.1f KiB, %.1f bytes per part), %d fsyncs (%.2f per part), "
          "%.1f s under strace; budget < 1 MiB: %s"
          % (journal, journal / 1024, journal / n, syncs, syncs / n, wall, verdict(journal < MiB)))


def rate_budget(a, plain_ep):
    cap_kib = 200
    mib = a.rate_mib
    print("== 3. --limit-rate %dKiB/s: %d MiB file (~%.0f s), 1 MiB parts, HTTP"
          % (cap_kib, mib, mib * 1024 / cap_kib))
    path = os.path.join(a.work, "rate.bin")
    make_file(path, mib)
    argv = upload_argv(a, plain_ep, path, "rate.bin", os.path.join(a.work, "ckpt-rate"), 1,
                       part="1MiB", threshold="1MiB", extra=["--limit-rate", "%dKiB/s" % cap_kib])
    s0 = stats(plain_ep)["bytes_received"]
    t0 = time.monotonic()
    p = spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = []  # (seconds since start, bytes received) at each change
    last = s0
    while p.poll() is None and time.monotonic() - t0 < 300:
        b = stats(plain_ep)["bytes_received"]
        if b != last:
            samples.append((time.monotonic() - t0, b - s0))
            last = b
        time.sleep(0.02)
    _, err = p.communicate(timeout=60)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit("budgets: rate-capped upload failed: %s" % err.decode(errors="replace")[-400:])
    cap = cap_kib * 1024
    overall = mib * MiB / wall
    dev = round((overall - cap) / cap * 100, 1) + 0.0  # no "-0.0"
    print("   whole run: %d bytes in %.2f s = %.1f KiB/s, %+.1f %% from the cap: %s"
          % (mib * MiB, wall, overall / 1024, dev, verdict(abs(dev) <= 5)))
    # Between the first and the last part the server stored: the steady rate, without process
    # start, Initiate and Complete.
    parts = [(t, b) for t, b in samples if b <= mib * MiB]
    if len(parts) >= 3:
        (t1, b1), (t2, b2) = parts[0], parts[-1]
        steady = (b2 - b1) / (t2 - t1)
        sdev = round((steady - cap) / cap * 100, 1) + 0.0
        print("   steady state (part %d to part %d as the server stored them): %.1f KiB/s, %+.1f %%: %s"
              % (1, len(parts), steady / 1024, sdev, verdict(abs(sdev) <= 5)))


def main():
    global ENV
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate-mib", type=int, default=6)
    ap.add_argument("--journal-log", default="")
    ap.add_argument("--real-parts", type=int, default=10000)
    ap.add_argument("--no-seccomp", dest="seccomp", action="store_false")
    a = ap.parse_args()
    ENV = dict(os.environ, OSS_ACCESS_KEY_ID=AK, OSS_ACCESS_KEY_SECRET=SK)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        plain = start_serve(a, "http", False)
        tls = start_serve(a, "tls", True)
        big = os.path.join(a.work, "big.bin")
        make_file(big, a.size_mib)
        rss_budget(a, tls, big)
        journal_budget(a, plain, big)
        journal_10k(a)
        journal_real(a, plain)
        rate_budget(a, plain)
    finally:
        for p in CHILDREN:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(p.pid, sig)
                    p.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
