#!/usr/bin/env python3
"""Benchmarks ossup against its peers on the same servers in the same run.

Started by tests/bench/run.sh (which builds ossup and installs the tools); see that file for
what is measured and how. Standard library only, so it runs under any python3 >= 3.8.

Every contender uploads the same generated file. Runs alternate round-robin (one run of each
contender per round, the starting contender rotating from round to round), so slow drifts of a
shared machine spread over all contenders instead of landing on one.
"""

import argparse
import csv
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

MiB = 1 << 20
GiB = 1 << 30
AK, SK = "bench-id", "bench-secret"
BUCKET = "bench"
PART = 8 * MiB

# Every child process this script starts and has not reaped yet (servers and uploads), so that
# a signal or an error never leaves one behind.
CHILDREN = []


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def kill_group(p, sig):
    """Signals every process of child `p`'s process group (each child gets its own, so that
    GNU time's child, or a tool's helpers, are never left behind)."""
    try:
        os.killpg(p.pid, sig)
    except OSError:
        pass


def stop_children():
    for p in CHILDREN:
        kill_group(p, signal.SIGTERM)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        kill_group(p, signal.SIGKILL)
    CHILDREN.clear()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("bench: %s exited with status %s at startup" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("bench: %s did not listen on port %d within %.0f s" % (what, port, timeout))


def spawn(argv, env=None, stdout=None, stderr=None):
    p = subprocess.Popen(argv, env=env, stdout=stdout or subprocess.DEVNULL,
                         stderr=stderr or subprocess.DEVNULL, start_new_session=True)
    CHILDREN.append(p)
    return p


def reap(p):
    try:
        CHILDREN.remove(p)
    except ValueError:
        pass


class Server:
    """One server: ossup serve (plain or TLS) or the S3 server nobody here wrote."""

    def __init__(self, name, endpoint, store, proc, kind):
        self.name, self.endpoint, self.store, self.proc, self.kind = name, endpoint, store, proc, kind

    def stats(self):
        with urllib.request.urlopen(self.endpoint + "/_ossup/stats", timeout=10) as r:
            return json.loads(r.read())


def start_ossup_serve(a, name, tls):
    store = os.path.join(a.work, "store-" + name)
    out = open(os.path.join(a.work, "serve-%s.out" % name), "wb")
    err = open(os.path.join(a.work, "serve-%s.err" % name), "wb")
    argv = [a.bin, "serve", store, "--listen", "127.0.0.1:0", "--bucket", BUCKET, "--anonymous"]
    if tls:
        argv += ["--tls-cert", a.cert, "--tls-key", a.key]
    env = dict(os.environ, OSS_ACCESS_KEY_ID=AK, OSS_ACCESS_KEY_SECRET=SK)
    proc = spawn(argv, env=env, stdout=out, stderr=err)
    path = os.path.join(a.work, "serve-%s.out" % name)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with open(path) as f:
            m = re.search(r"listening on (https?://[0-9.:]+)", f.read())
        if m:
            log("ossup serve (%s): %s" % (name, m.group(1)))
            return Server(name, m.group(1), store, proc, "ossup")
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit("bench: ossup serve (%s) did not start; see %s" % (name, path))


def start_s3_server(a):
    port = free_port()
    store = os.path.join(a.work, "store-s3")
    os.makedirs(store)
    err = open(os.path.join(a.work, "s3-server.log"), "wb")
    if a.s3 == "s3s-fs":
        argv = [a.s3_bin, "--host", "127.0.0.1", "--port", str(port),
                "--access-key", AK, "--secret-key", SK, store]
    else:
        argv = [a.s3_bin, "-H", "127.0.0.1", "-p", str(port)]
    proc = spawn(argv, stdout=err, stderr=err)
    wait_port(port, proc, a.s3)
    srv = Server("s3", "http://127.0.0.1:%d" % port, store, proc, a.s3)
    r = curl_s3(srv, "PUT", "/" + BUCKET)
    if r.returncode != 0:
        raise SystemExit("bench: cannot create bucket on %s: %s" % (a.s3, r.stderr.strip()))
    log("%s: %s" % (a.s3, srv.endpoint))
    return srv


def curl_s3(srv, method, path, extra=()):
    argv = ["curl", "-sS", "-f", "-X", method, "--aws-sigv4", "aws:amz:us-east-1:s3",
            "--user", "%s:%s" % (AK, SK), "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
    argv += list(extra) + [srv.endpoint + path]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def object_size(srv, key, a):
    """Content-Length of a stored object (HEAD), or None."""
    if srv.kind == "ossup":
        argv = ["curl", "-sS", "-f", "-I"]
        if srv.endpoint.startswith("https"):
            argv += ["--cacert", a.cert]
        r = subprocess.run(argv + ["%s/%s/%s" % (srv.endpoint, BUCKET, key)],
                           capture_output=True, text=True, timeout=60)
    else:
        r = curl_s3(srv, "HEAD", "/%s/%s" % (BUCKET, key), ["-I"])
    m = re.search(r"(?im)^content-length:\s*(\d+)", r.stdout)
    return int(m.group(1)) if r.returncode == 0 and m else None


def delete_object(srv, key, a):
    if srv.kind == "ossup":
        argv = ["curl", "-sS", "-X", "DELETE", "-o", "/dev/null"]
        if srv.endpoint.startswith("https"):
            argv += ["--cacert", a.cert]
        subprocess.run(argv + ["%s/%s/%s" % (srv.endpoint, BUCKET, key)],
                       capture_output=True, timeout=60)
    else:
        curl_s3(srv, "DELETE", "/%s/%s" % (BUCKET, key))


class Contender:
    """One tool in one configuration. `make(run_dir, key)` gives (argv, env)."""

    def __init__(self, name, server, reference, make, tool, resumable=False, goal_role=None):
        self.name, self.server, self.reference = name, server, reference
        self.make, self.tool, self.resumable, self.goal_role = make, tool, resumable, goal_role
        self.runs = []  # dicts: wall, cpu, rss_kib
        self.failures = []
        self.ckpt = None  # dict from the strace run
        self.resume = None  # dict from the kill-and-resume run

    def key(self, tag):
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        if self.tool == "rclone":
            # rclone copy keeps the file's own name under the destination "directory".
            return "%s-%s/%s" % (slug, tag, os.path.basename(self.file))
        return "%s-%s.bin" % (slug, tag)


def contenders(a, plain, tls, s3):
    base_env = dict(os.environ)
    for k in ("AWS_CA_BUNDLE", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        base_env.pop(k, None)
    oss_env = dict(base_env, OSS_ACCESS_KEY_ID=AK, OSS_ACCESS_KEY_SECRET=SK)
    f = a.file
    part = "%dMiB" % (PART // MiB)
    cs = []

    def curl_put(srv):
        def make(run_dir, key):
            argv = ["curl", "-sS", "-f", "-o", "/dev/null", "-T", f]
            if srv.endpoint.startswith("https"):
                argv += ["--cacert", a.cert]
            return argv + ["%s/%s/%s" % (srv.endpoint, BUCKET, key)], base_env
        return make

    def ossup(srv, jobs, extra=(), threshold=part):
        def make(run_dir, key):
            argv = [a.bin, "upload", f, "oss://%s/%s" % (BUCKET, key), "--endpoint", srv.endpoint,
                    "--part-size", part, "--threshold", threshold, "--jobs", str(jobs),
                    "--checkpoint-dir", os.path.join(run_dir, "ckpt"), "-q"]
            if srv.kind == "ossup":
                argv += ["--region", "cn-hangzhou"]
            else:
                argv += ["--region", "us-east-1", "--signature", "s3-v4", "--path-style"]
            if srv.endpoint.startswith("https"):
                argv += ["--ca-file", a.cert]
            return argv + list(extra), oss_env
        return make

    def oss2(srv, threads):
        def make(run_dir, key):
            argv = [a.python, a.oss2_helper, srv.endpoint, BUCKET, key, f, str(threads),
                    os.path.join(run_dir, "ckpt"), str(PART)]
            return argv, dict(base_env, OSSUP_AK=AK, OSSUP_SK=SK)
        return make

    aws_cfg = os.path.join(a.work, "aws-config")
    with open(aws_cfg, "w") as fh:
        fh.write("[default]\nregion = us-east-1\ns3 =\n  addressing_style = path\n"
                 "  multipart_threshold = %d\n  multipart_chunksize = %d\n"
                 "  max_concurrent_requests = 4\n" % (PART, PART))
    aws_env = dict(base_env, AWS_CONFIG_FILE=aws_cfg, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                   AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_EC2_METADATA_DISABLED="true")
    rclone_cfg = os.path.join(a.work, "rclone.conf")
    open(rclone_cfg, "w").close()
    rclone_env = dict(base_env, RCLONE_CONFIG=rclone_cfg)
    for k, v in (("TYPE", "s3"), ("PROVIDER", "Other"), ("ACCESS_KEY_ID", AK),
                 ("SECRET_ACCESS_KEY", SK), ("REGION", "us-east-1"), ("FORCE_PATH_STYLE", "true")):
        rclone_env["RCLONE_CONFIG_BENCHS3_" + k] = v

    plain_ref, tls_ref, s3_ref = "curl PUT, HTTP", "curl PUT, TLS", "curl PUT (SigV4), S3"
    cs.append(Contender(plain_ref, plain, None, curl_put(plain), "curl"))
    cs.append(Contender(tls_ref, tls, None, curl_put(tls), "curl"))
    cs.append(Contender("oss2 resumable_upload, 1 thread", plain, plain_ref, oss2(plain, 1), "oss2",
                        True, "oss2-1"))
    cs.append(Contender("oss2 resumable_upload, 4 threads", plain, plain_ref, oss2(plain, 4), "oss2",
                        True, "oss2-4"))
    cs.append(Contender("ossup --jobs 1, HTTP", plain, plain_ref, ossup(plain, 1), "ossup", True,
                        "ossup-1-http"))
    cs.append(Contender("ossup --jobs 4, HTTP", plain, plain_ref, ossup(plain, 4), "ossup", True,
                        "ossup-4-http"))
    cs.append(Contender("ossup --jobs 1, TLS", tls, tls_ref, ossup(tls, 1), "ossup", False,
                        "ossup-1-tls"))
    cs.append(Contender("ossup --jobs 4, TLS", tls, tls_ref, ossup(tls, 4), "ossup", False,
                        "ossup-4-tls"))
    # Not multipart: one PutObject (threshold above the file size). Shows what the multipart
    # protocol itself costs on this server, next to curl's single PUT.
    cs.append(Contender("ossup single PutObject, HTTP", plain, plain_ref,
                        ossup(plain, 1, threshold="5GiB"), "ossup"))
    if s3 is not None:
        s3_slot = s3.endpoint

        def curl_s3_put(run_dir, key):
            return (["curl", "-sS", "-f", "-o", "/dev/null", "--aws-sigv4", "aws:amz:us-east-1:s3",
                     "--user", "%s:%s" % (AK, SK), "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                     "-T", f, "%s/%s/%s" % (s3_slot, BUCKET, key)], base_env)

        def aws(run_dir, key):
            return ([a.aws, "s3", "cp", f, "s3://%s/%s" % (BUCKET, key), "--endpoint-url", s3_slot,
                     "--no-progress", "--only-show-errors"], aws_env)

        def rclone(run_dir, key):
            env = dict(rclone_env, RCLONE_CONFIG_BENCHS3_ENDPOINT=s3_slot)
            dest = "benchs3:%s/%s/" % (BUCKET, os.path.dirname(key))
            return (["rclone", "copy", f, dest, "--s3-chunk-size", "%dM" % (PART // MiB),
                     "--s3-upload-cutoff", "%dM" % (PART // MiB), "--s3-upload-concurrency", "4",
                     "-q"], env)

        cs.append(Contender(s3_ref, s3, None, curl_s3_put, "curl"))
        cs.append(Contender("aws s3 cp, 4 concurrent", s3, s3_ref, aws, "aws"))
        cs.append(Contender("rclone copy, 4 concurrent", s3, s3_ref, rclone, "rclone"))
        cs.append(Contender("ossup --jobs 1 --signature s3-v4", s3, s3_ref, ossup(s3, 1), "ossup"))
        cs.append(Contender("ossup --jobs 4 --signature s3-v4", s3, s3_ref, ossup(s3, 4), "ossup"))
    for c in cs:
        c.file = f
    return cs


def run_once(a, c, tag, check_content):
    """One timed run of contender `c`. Returns a dict or raises RuntimeError."""
    run_dir = os.path.join(a.work, "runs", "%s-%s" % (re.sub(r"\W+", "_", c.name), tag))
    os.makedirs(run_dir)
    key = c.key(tag)
    argv, env = c.make(run_dir, key)
    tfile = os.path.join(run_dir, "time")
    out = open(os.path.join(run_dir, "out"), "wb")
    t0 = time.monotonic()
    # GNU time reports the peak RSS ("Maximum resident set size", %M); the CPU seconds come
    # from wait4() on GNU time itself, whose rusage includes the tool it ran, in microseconds
    # (GNU time prints only hundredths).
    p = spawn(["/usr/bin/time", "-f", "%e %U %S %M", "-o", tfile] + argv, env=env,
              stdout=out, stderr=out)
    timer = threading.Timer(a.timeout, kill_group, (p, signal.SIGKILL))
    timer.start()
    try:
        _pid, status, ru = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    wall = time.monotonic() - t0
    p.returncode = exit_code(status)
    reap(p)
    out.close()
    with open(os.path.join(run_dir, "out"), "rb") as fh:
        output = fh.read().decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError("exit %s: %s" % (p.returncode, output.strip()[-600:]))
    with open(tfile) as fh:
        rss = int(fh.read().split()[-1])
    cpu = ru.ru_utime + ru.ru_stime
    size = object_size(c.server, key, a)
    if size != a.size:
        raise RuntimeError("stored object %r has size %s, expected %d" % (key, size, a.size))
    if check_content and c.server.kind == "ossup":
        # ossup serve keeps objects as plain files: compare the bytes once per contender.
        stored = os.path.join(c.server.store, BUCKET, encode_key(key))
        if not files_equal(stored, a.file):
            raise RuntimeError("stored object %r differs from the file" % key)
    delete_object(c.server, key, a)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"wall": wall, "cpu": cpu, "rss_kib": rss}


def exit_code(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else status


def encode_key(key):
    # ossup::proto::sign::uri_encode(key, false): unreserved characters stay, everything else
    # (including '/') is percent-encoded with upper-case hex.
    keep = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
    return "".join(chr(b) if b in keep else "%%%02X" % b for b in key.encode())


def files_equal(p, q):
    try:
        with open(p, "rb") as x, open(q, "rb") as y:
            while True:
                bx, by = x.read(MiB), y.read(MiB)
                if bx != by:
                    return False
                if not bx:
                    return True
    except OSError:
        return False


# strace line shapes (with -f -y): a complete call, the first half of an interrupted one, and
# its resumption.
RE_FULL = re.compile(r"^(\d+)\s+(\w+)\((\d+)<([^>]*)>.*\)\s+=\s+(-?\d+)")
RE_UNFINISHED = re.compile(r"^(\d+)\s+(\w+)\((\d+)<([^>]*)>.*<unfinished \.\.\.>$")
RE_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>.*\)\s+=\s+(-?\d+)")
WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}
SYNCS = {"fsync", "fdatasync", "sync_file_range", "syncfs"}
STRACE_CALLS = ",".join(sorted(WRITES | SYNCS))


def parse_strace(path, ckpt_dir):
    """Bytes written to files under ckpt_dir, and fsync-family calls (on any file)."""
    written, syncs, pending = 0, 0, {}
    prefix = os.path.realpath(ckpt_dir) + "/"
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            m = RE_FULL.match(line)
            if m:
                call, fdpath, ret = m.group(2), m.group(4), int(m.group(5))
            else:
                m = RE_UNFINISHED.match(line)
                if m:
                    pending[m.group(1)] = (m.group(2), m.group(4))
                    continue
                m = RE_RESUMED.match(line)
                if not m or m.group(1) not in pending:
                    continue
                call, fdpath = pending.pop(m.group(1))
                ret = int(m.group(3))
            if call in SYNCS:
                syncs += 1
            elif call in WRITES and ret > 0 and fdpath.startswith(prefix):
                written += ret
    return written, syncs


def checkpoint_run(a, c, parts):
    """One upload under strace: checkpoint bytes and fsyncs per part."""
    run_dir = os.path.join(a.work, "runs", "strace-" + re.sub(r"\W+", "_", c.name))
    os.makedirs(run_dir)
    key = c.key("strace")
    argv, env = c.make(run_dir, key)
    trace = os.path.join(run_dir, "trace")
    base = ["strace", "-f", "-qq", "-y", "-e", "trace=" + STRACE_CALLS, "-o", trace]
    if a.seccomp:
        base.insert(1, "--seccomp-bpf")
    r = subprocess.run(base + argv, env=env, capture_output=True, timeout=a.timeout)
    if r.returncode != 0:
        raise RuntimeError("under strace: exit %d: %s" % (r.returncode, r.stderr[-600:]))
    written, syncs = parse_strace(trace, os.path.join(run_dir, "ckpt"))
    delete_object(c.server, key, a)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"bytes": written, "syncs": syncs, "bytes_per_part": written / parts,
            "syncs_per_part": syncs / parts}


def part_files(srv):
    """Names of every part data file ossup serve holds (new ones appear when a part starts)."""
    root = os.path.join(srv.store, ".ossup-uploads")
    found = set()
    try:
        for d in os.scandir(root):
            if d.is_dir():
                for e in os.scandir(d.path):
                    found.add(d.name + "/" + e.name)
    except OSError:
        pass
    return found


def resume_run(a, c):
    """Kill the upload (SIGKILL) once the server has received half the file, start it again,
    and measure what the second run sends and how long it takes to start its first part."""
    srv = c.server
    run_dir = os.path.join(a.work, "runs", "resume-" + re.sub(r"\W+", "_", c.name))
    os.makedirs(run_dir)
    key = c.key("resume")
    argv, env = c.make(run_dir, key)
    s0 = srv.stats()["bytes_received"]
    p = spawn(argv, env=env)
    end = time.monotonic() + a.timeout
    killed = False
    while time.monotonic() < end and p.poll() is None:
        if srv.stats()["bytes_received"] - s0 >= a.size // 2:
            kill_group(p, signal.SIGKILL)  # as a power cut would
            killed = True
            break
        time.sleep(0.002)
    p.wait()
    reap(p)
    if not killed:
        if p.returncode != 0:
            raise RuntimeError("the first run failed with status %s" % p.returncode)
        # With few parts in flight at once (--quick), the last part can land before the kill.
        # Nothing to resume: not a failure of the tool, but no figures either.
        log("resume     %-32s finished before the kill; no resume figures" % c.name)
        delete_object(srv, key, a)
        shutil.rmtree(run_dir, ignore_errors=True)
        return None
    # The server accounts a request when it ends; give the severed ones a moment.
    time.sleep(0.3)
    s1 = srv.stats()["bytes_received"]
    before = part_files(srv)
    t0 = time.monotonic()
    p = spawn(argv, env=env)
    first_start = first_stored = None
    while time.monotonic() - t0 < a.timeout and p.poll() is None:
        now = time.monotonic() - t0
        if first_start is None and part_files(srv) - before:
            first_start = now
        if first_stored is None and srv.stats()["bytes_received"] > s1:
            first_stored = now
        if first_start is not None and first_stored is not None:
            break
        time.sleep(0.002)
    rc = p.wait(timeout=a.timeout)
    total = time.monotonic() - t0
    reap(p)
    if rc != 0:
        raise RuntimeError("the resumed run exited with status %d" % rc)
    s2 = srv.stats()["bytes_received"]
    size = object_size(srv, key, a)
    if size != a.size:
        raise RuntimeError("resumed object has size %s, expected %d" % (size, a.size))
    delete_object(srv, key, a)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"first_run_bytes": s1 - s0, "resumed_bytes": s2 - s1,
            "resent_bytes": (s2 - s0) - a.size, "first_part_start_s": first_start,
            "first_part_stored_s": first_stored, "resumed_wall_s": total}


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(x, spec="%.1f", none="—"):
    return none if x is None else spec % x


def summarize(a, cs):
    by_name = {c.name: c for c in cs}
    rows = []
    for c in cs:
        walls = [r["wall"] for r in c.runs]
        mibs = [a.size / MiB / w for w in walls]
        row = {
            "contender": c.name,
            "server": c.server.kind if c.server.kind != "ossup" else "ossup serve",
            "transport": "TLS" if c.server.endpoint.startswith("https") else "HTTP",
            "runs": len(c.runs),
            "failures": len(c.failures),
            "mib_s": median(mibs),
            "mib_s_min": min(mibs) if mibs else None,
            "mib_s_max": max(mibs) if mibs else None,
            "wall_s": median(walls),
            "rss_mib": median([r["rss_kib"] / 1024 for r in c.runs]),
            "rss_mib_max": max([r["rss_kib"] / 1024 for r in c.runs]) if c.runs else None,
            "cpu_s_per_gib": median([r["cpu"] / (a.size / GiB) for r in c.runs]),
            "ckpt_bytes": c.ckpt["bytes"] if c.ckpt else None,
            "ckpt_bytes_per_part": c.ckpt["bytes_per_part"] if c.ckpt else None,
            "fsyncs_per_part": c.ckpt["syncs_per_part"] if c.ckpt else None,
            "resent_mib": c.resume["resent_bytes"] / MiB if c.resume else None,
            "resumed_mib": c.resume["resumed_bytes"] / MiB if c.resume else None,
            "first_part_start_s": c.resume["first_part_start_s"] if c.resume else None,
            "first_part_stored_s": c.resume["first_part_stored_s"] if c.resume else None,
            "resumed_wall_s": c.resume["resumed_wall_s"] if c.resume else None,
            "walls": " ".join("%.3f" % w for w in walls),
            "reference": c.reference or "",
        }
        rows.append(row)
    by_row = {r["contender"]: r for r in rows}
    for r in rows:
        ref = by_row.get(r["reference"]) if r["reference"] else r
        r["x_curl"] = (r["mib_s"] / ref["mib_s"]) if ref and r["mib_s"] and ref["mib_s"] else None
    return rows, by_row, by_name


def goals(by_row, by_name):
    role = {c.goal_role: by_row[c.name] for c in by_name.values() if c.goal_role}
    out = []

    def add(goal, measured, met):
        out.append({"goal": goal, "measured": measured,
                    "met": "n/a" if met is None else ("yes" if met else "NO")})

    for tr in ("http", "tls"):
        o = role.get("ossup-1-" + tr)
        ref = by_row.get("curl PUT, " + tr.upper())
        if o and ref and o["mib_s"] and ref["mib_s"]:
            x = o["mib_s"] / ref["mib_s"]
            add("ossup --jobs 1 >= 0.9 x curl throughput (%s)" % tr.upper(),
                "%.3f x (%.0f vs %.0f MiB/s)" % (x, o["mib_s"], ref["mib_s"]), x >= 0.9)
        else:
            add("ossup --jobs 1 >= 0.9 x curl throughput (%s)" % tr.upper(), "not measured", None)
    for n in ("1", "4"):
        o, p = role.get("ossup-%s-http" % n), role.get("oss2-" + n)
        if o and p and o["mib_s"] and p["mib_s"]:
            x = o["mib_s"] / p["mib_s"]
            add("ossup --jobs %s >= 3 x oss2 (%s thread%s) throughput" % (n, n, "s" if n != "1" else ""),
                "%.3f x (%.0f vs %.0f MiB/s)" % (x, o["mib_s"], p["mib_s"]), x >= 3)
            y = o["rss_mib"] / p["rss_mib"]
            add("ossup --jobs %s peak RSS <= 1/10 of oss2's (%s thread%s)" % (n, n, "s" if n != "1" else ""),
                "1/%.1f (%.1f vs %.1f MiB)" % (1 / y, o["rss_mib"], p["rss_mib"]), y <= 0.1)
        else:
            add("ossup --jobs %s vs oss2 (%s threads)" % (n, n), "not measured", None)
    res = [r for name, r in by_row.items() if by_name[name].resumable
           and r["ckpt_bytes_per_part"] is not None]
    ossup_rows = [r for r in res if by_name[r["contender"]].tool == "ossup"]
    other = [r for r in res if by_name[r["contender"]].tool != "ossup"]
    if ossup_rows and other:
        worst_ossup = max(r["ckpt_bytes_per_part"] for r in ossup_rows)
        best_other = min(other, key=lambda r: r["ckpt_bytes_per_part"])
        add("fewest checkpoint bytes per part of the resumable tools",
            "ossup %.1f B/part vs %s %.1f B/part" % (worst_ossup, best_other["contender"],
                                                     best_other["ckpt_bytes_per_part"]),
            worst_ossup < best_other["ckpt_bytes_per_part"])
    else:
        add("fewest checkpoint bytes per part of the resumable tools", "not measured", None)
    return out


COLUMNS = [
    ("contender", "contender", "%s"), ("server", "server", "%s"), ("transport", "transport", "%s"),
    ("mib_s", "MiB/s (median)", "%.0f"), ("x_curl", "x curl", "%.2f"),
    ("rss_mib", "peak RSS MiB", "%.1f"), ("cpu_s_per_gib", "CPU s/GiB", "%.2f"),
    ("ckpt_bytes_per_part", "ckpt B/part", "%.1f"), ("fsyncs_per_part", "fsyncs/part", "%.2f"),
    ("resent_mib", "resume: re-sent MiB", "%.1f"), ("first_part_start_s", "resume: s to 1st part", "%.3f"),
]


def render(a, rows, goal_rows, machine):
    lines = []
    lines.append("File: %d MiB, %d MiB parts, %d run(s) per contender (round-robin); S3 server: %s."
                 % (a.size // MiB, PART // MiB, a.reps, a.s3 if a.s3 != "none" else "none"))
    lines.append("Command: `%s`. Machine: %s." % (a.command, machine))
    if a.size < 64 * MiB:
        lines.append("(A small file: process start-up and fixed per-upload costs dominate these "
                     "figures. Judge the goals on the default run.)")
    lines.append("")
    lines.append("| " + " | ".join(h for _, h, _ in COLUMNS) + " |")
    lines.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(COLUMNS))) + "|")
    for r in rows:
        cells = []
        for k, _, spec in COLUMNS:
            v = r[k]
            if k == "mib_s" and r["failures"]:
                cells.append("FAILED (%d/%d)" % (r["failures"], r["failures"] + r["runs"]) if v is None
                             else "%.0f (%d failed)" % (v, r["failures"]))
            elif isinstance(v, str):
                cells.append(v)
            else:
                cells.append(fmt(v, spec))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| goal | measured | met |")
    lines.append("|---|---|---|")
    for g in goal_rows:
        lines.append("| %s | %s | %s |" % (g["goal"], g["measured"], g["met"]))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--size-mib", type=int, required=True)
    ap.add_argument("--reps", type=int, required=True)
    ap.add_argument("--s3", choices=["s3s-fs", "moto", "none"], required=True)
    ap.add_argument("--s3-bin", default="")
    ap.add_argument("--python", required=True, help="python with oss2")
    ap.add_argument("--aws", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--machine", default="")
    ap.add_argument("--command", default="bash tests/bench/run.sh")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--no-seccomp", dest="seccomp", action="store_false")
    a = ap.parse_args()
    a.size = a.size_mib * MiB
    a.oss2_helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "oss2_upload.py")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        return bench(a)
    finally:
        stop_children()


def bench(a):
    os.makedirs(os.path.join(a.work, "runs"), exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    a.file = os.path.join(a.work, "upload.bin")
    log("generating %d MiB of random data" % a.size_mib)
    with open(a.file, "wb") as fh:
        for _ in range(a.size_mib):
            fh.write(os.urandom(MiB))
    plain = start_ossup_serve(a, "http", False)
    tls = start_ossup_serve(a, "tls", True)
    s3 = start_s3_server(a) if a.s3 != "none" else None
    cs = contenders(a, plain, tls, s3)
    parts = -(-a.size // PART)

    for rnd in range(a.reps):
        k = rnd % len(cs)
        order = cs[k:] + cs[:k]
        log("round %d/%d" % (rnd + 1, a.reps))
        for c in order:
            try:
                r = run_once(a, c, "r%d" % rnd, check_content=(rnd == 0))
                c.runs.append(r)
                log("  %-36s %7.1f MiB/s  %6.1f MiB RSS" % (c.name, a.size / MiB / r["wall"],
                                                           r["rss_kib"] / 1024))
            except Exception as e:  # a failing contender is reported, the others still run
                c.failures.append(str(e))
                log("  %-36s FAILED: %s" % (c.name, e))

    for c in cs:
        if not c.resumable:
            continue
        try:
            c.ckpt = checkpoint_run(a, c, parts)
            log("checkpoint %-32s %d bytes, %d fsyncs for %d parts"
                % (c.name, c.ckpt["bytes"], c.ckpt["syncs"], parts))
        except Exception as e:
            c.failures.append("checkpoint run: %s" % e)
            log("checkpoint %-32s FAILED: %s" % (c.name, e))
        try:
            c.resume = resume_run(a, c)
            if c.resume is None:
                continue
            log("resume     %-32s re-sent %.1f MiB, first part after %s s"
                % (c.name, c.resume["resent_bytes"] / MiB, fmt(c.resume["first_part_start_s"], "%.3f")))
        except Exception as e:
            c.failures.append("resume run: %s" % e)
            log("resume     %-32s FAILED: %s" % (c.name, e))

    rows, by_row, by_name = summarize(a, cs)
    goal_rows = goals(by_row, by_name)
    text = render(a, rows, goal_rows, a.machine)
    fields = ["contender", "server", "transport", "reference", "runs", "failures", "mib_s",
              "mib_s_min", "mib_s_max", "x_curl", "wall_s", "rss_mib", "rss_mib_max",
              "cpu_s_per_gib", "ckpt_bytes", "ckpt_bytes_per_part", "fsyncs_per_part",
              "resent_mib", "resumed_mib", "first_part_start_s", "first_part_stored_s",
              "resumed_wall_s", "walls"]
    with open(os.path.join(a.out, "results.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("%.4g" % v if isinstance(v, float) else v) for k, v in r.items()})
    with open(os.path.join(a.out, "goals.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["goal", "measured", "met"])
        w.writeheader()
        w.writerows(goal_rows)
    with open(os.path.join(a.out, "results.md"), "w") as fh:
        fh.write(text)
    print(text)
    failed = [(c.name, f) for c in cs for f in c.failures]
    for name, f in failed:
        print("FAILED %s: %s" % (name, f))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
