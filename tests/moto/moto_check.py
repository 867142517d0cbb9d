#!/usr/bin/env python3
"""ossup against moto_server: an S3 implementation nobody on this project wrote.

Run by tests/moto/run.sh, which starts moto_server (with S3_UPLOAD_PART_MIN_SIZE lowered) and
passes:
  MOTO_ENDPOINT  http://127.0.0.1:PORT (auth still off: INITIAL_NO_AUTH_ACTION_COUNT = inf)
  OSSUP_BIN      the ossup binary
  WORK           a scratch directory (removed by run.sh)

Steps: while moto's IAM checking is off, create an IAM user with an allow-all policy, an
access key and a bucket; then POST `0` to /moto-api/reset-auth, which turns on moto's SigV4
and IAM checks for every later request (settings.INITIAL_NO_AUTH_ACTION_COUNT = 0). Then run
`ossup upload --signature s3-v4` for a single PUT, an empty file, multipart uploads (awkward
keys, several jobs), a resume after SIGKILL (checked with ListParts), `ossup abort` (checked
with ListMultipartUploads), and a wrong secret (exit 77, one error line). Objects are read
back with boto3 and compared byte for byte.

Prints `ok   NAME` / `FAIL NAME: why` per check and `moto: N passed, M failed`; exit 1 on any
failure.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config

ENDPOINT = os.environ["MOTO_ENDPOINT"]
BIN = os.environ["OSSUP_BIN"]
WORK = os.environ["WORK"]
REGION = "us-east-1"
BUCKET = "ossup-moto"
KIB = 1024
MIB = 1024 * 1024

passed = 0
failed = 0


def result(name, ok, why=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + name, flush=True)
    else:
        failed += 1
        print("FAIL %s: %s" % (name, why), flush=True)


def client(ak, sk):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=ak,
        aws_secret_access_key=sk,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def make_file(name, size, seed):
    """Deterministic content: SHA-256 in counter mode."""
    path = os.path.join(WORK, name)
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
        i += 1
    data = bytes(out[:size])
    with open(path, "wb") as f:
        f.write(data)
    return path, data


def ossup_cmd(args, ak, sk, extra_env=None):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": WORK,
        "LANG": "C",
        "AWS_ACCESS_KEY_ID": ak,
        "AWS_SECRET_ACCESS_KEY": sk,
    }
    env.update(extra_env or {})
    return [BIN] + args, env


def upload_args(path, key, ck, extra=()):
    return [
        "upload", path, "s3://%s/%s" % (BUCKET, key),
        "--signature", "s3-v4", "--region", REGION, "--endpoint", ENDPOINT,
        "--checkpoint-dir", ck,
        # moto runs with S3_UPLOAD_PART_MIN_SIZE lowered: keep the small parts as given.
        "--allow-small-parts",
    ] + list(extra)


def run(args, ak, sk, timeout=120):
    cmd, env = ossup_cmd(args, ak, sk)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def error_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("ossup: error:")]


def resumed_count(stderr):
    """N from the final `(P parts, N resumed, ...)` log line, or None."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("ossup: info: uploaded ") and " resumed" in line:
            inner = line.rsplit(" (", 1)[1]
            return int(inner.split(", ")[1].split(" ")[0])
    return None


def journals(ck):
    try:
        return [n for n in os.listdir(ck) if n.endswith(".ossup")]
    except FileNotFoundError:
        return []


def get(s3, key):
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def open_uploads(s3, key):
    # No Prefix parameter: moto's signature check mishandles encoded query values too.
    r = s3.list_multipart_uploads(Bucket=BUCKET)
    return [u for u in r.get("Uploads", []) if u["Key"] == key]


def parts_on_server(s3, key):
    ups = open_uploads(s3, key)
    if len(ups) != 1:
        return 0, None
    r = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=ups[0]["UploadId"])
    return len(r.get("Parts", [])), ups[0]["UploadId"]


def start_and_kill(s3, path, key, ck, ak, sk, min_parts):
    """Starts a slow multipart upload and SIGKILLs it once moto lists >= min_parts parts."""
    cmd, env = ossup_cmd(
        upload_args(path, key, ck, ["--part-size", "256KiB", "--threshold", "256KiB",
                                    "--limit-rate", "512KiB/s", "-q"]), ak, sk)
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    n = 0
    while time.time() < deadline and p.poll() is None:
        n, _ = parts_on_server(s3, key)
        if n >= min_parts:
            break
        time.sleep(0.1)
    still_running = p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    p.stderr.close()
    return still_running, n


def main():
    ck = os.path.join(WORK, "ck")

    # --- setup while moto does not check anything
    iam = boto3.client("iam", endpoint_url=ENDPOINT, region_name=REGION,
                       aws_access_key_id="setup", aws_secret_access_key="setup")
    iam.create_user(UserName="ossup")
    iam.put_user_policy(
        UserName="ossup",
        PolicyName="all",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }),
    )
    key = iam.create_access_key(UserName="ossup")["AccessKey"]
    ak, sk = key["AccessKeyId"], key["SecretAccessKey"]
    client("setup", "setup").create_bucket(Bucket=BUCKET)

    # --- switch SigV4/IAM checking on for every request from now on
    # (Not form-encoded: Flask would consume a form body and moto would read an empty one.)
    req = urllib.request.Request(ENDPOINT + "/moto-api/reset-auth", data=b"0", method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=30) as r:
        body = json.loads(r.read())
    result("reset-auth accepted", body.get("status") == "ok", repr(body))

    s3 = client(ak, sk)
    try:
        client(ak, sk + "x").list_objects_v2(Bucket=BUCKET)
        result("moto rejects a wrong secret (auth is on)", False, "a wrong secret was accepted")
    except Exception as e:  # botocore ClientError
        code = getattr(e, "response", {}).get("Error", {}).get("Code", str(e))
        result("moto rejects a wrong secret (auth is on)", code == "SignatureDoesNotMatch", code)

    # --- single PutObject, empty object, multipart with awkward keys and several jobs
    cases = [
        ("small.bin", 10 * KIB + 3, "small/one put.bin", []),
        ("empty.bin", 0, "small/empty", []),
        # moto's SigV4 check (moto 5.1) rebuilds the canonical path from the decoded path and
        # rejects keys with '+', '%', '*', '(', "'", ':', ',', '@', '!' or non-ASCII even from
        # boto3 itself; spaces, '~', '?' and '//' work, so the awkward keys here use those.
        ("big.bin", 2 * MIB + 17, "multi/part key//with ~tilde and?query.bin",
         ["--part-size", "256KiB", "--threshold", "256KiB", "--jobs", "3"]),
        ("min.bin", 350 * KIB, "multi/min-parts",
         ["--part-size", "100KiB", "--threshold", "100KiB"]),
    ]
    for i, (name, size, objkey, extra) in enumerate(cases):
        path, data = make_file(name, size, i)
        rc, _, err = run(upload_args(path, objkey, ck, extra), ak, sk)
        if rc != 0:
            result("upload " + objkey, False, "exit %d: %s" % (rc, err.strip()))
            continue
        got = get(s3, objkey)
        result("upload " + objkey, got == data,
               "downloaded %d bytes, expected %d (or content differs)" % (len(got), len(data)))
    etag = s3.head_object(Bucket=BUCKET, Key="multi/part key//with ~tilde and?query.bin")["ETag"]
    result("multipart ETag names 9 parts", etag.strip('"').endswith("-9"), etag)

    # --- resume after SIGKILL
    path, data = make_file("resume.bin", 3 * MIB, 100)
    rkey = "resume/after kill.bin"
    running, n = start_and_kill(s3, path, rkey, ck, ak, sk, 3)
    result("slow upload killed mid-way", running and n >= 3, "running=%s parts=%d" % (running, n))
    n_after_kill, upload_id = parts_on_server(s3, rkey)
    result("ListParts shows the parts sent before the kill", 3 <= n_after_kill < 12,
           "%d parts listed" % n_after_kill)
    result("one journal after the kill", len(journals(ck)) == 1, repr(journals(ck)))
    rc, _, err = run(upload_args(path, rkey, ck, ["--part-size", "256KiB", "--threshold", "256KiB"]),
                     ak, sk)
    resumed = resumed_count(err)
    result("resumed upload finishes", rc == 0, "exit %d: %s" % (rc, err.strip()))
    result("resumed upload re-used the listed parts",
           resumed is not None and resumed >= n_after_kill - 1 and resumed >= 3,
           "resumed=%r, listed before=%d" % (resumed, n_after_kill))
    if rc == 0:
        got = get(s3, rkey)
        result("resumed object equals the file", got == data, "%d vs %d bytes" % (len(got), len(data)))
    result("no open upload after the resume", open_uploads(s3, rkey) == [], repr(open_uploads(s3, rkey)))
    result("journal removed after the resume", journals(ck) == [], repr(journals(ck)))

    # --- ossup abort
    akey = "abort/me.bin"
    apath, _ = make_file("abort.bin", 3 * MIB, 200)
    running, n = start_and_kill(s3, apath, akey, ck, ak, sk, 2)
    result("upload to abort left an open upload", running and len(open_uploads(s3, akey)) == 1,
           "running=%s uploads=%r" % (running, open_uploads(s3, akey)))
    rc, _, err = run(["abort", apath, "s3://%s/%s" % (BUCKET, akey), "--signature", "s3-v4",
                      "--region", REGION, "--endpoint", ENDPOINT, "--checkpoint-dir", ck], ak, sk)
    result("ossup abort exits 0", rc == 0, "exit %d: %s" % (rc, err.strip()))
    result("ListMultipartUploads empty after abort", open_uploads(s3, akey) == [],
           repr(open_uploads(s3, akey)))
    result("journal removed after abort", journals(ck) == [], repr(journals(ck)))

    # --- wrong secret: 77, one clear line
    path, _ = make_file("denied.bin", 300 * KIB, 300)
    for label, extra in (("put", []), ("multipart", ["--part-size", "100KiB", "--threshold", "100KiB"])):
        rc, _, err = run(upload_args(path, "denied/" + label, ck, extra), ak, sk + "-wrong")
        lines = error_lines(err)
        ok = (rc == 77 and len(lines) == 1 and "SignatureDoesNotMatch" in lines[0]
              and "panicked" not in err)
        result("wrong secret (%s) exits 77 with one line" % label, ok, "exit %d: %s" % (rc, err.strip()))
    # An unknown access key id.
    rc, _, err = run(upload_args(path, "denied/unknown-key", ck), "AKIANOSUCHKEY0000000", sk)
    lines = error_lines(err)
    result("unknown access key exits 77", rc == 77 and len(lines) == 1 and "InvalidAccessKeyId" in lines[0],
           "exit %d: %s" % (rc, err.strip()))

    print("moto: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # setup errors: count them and print the summary anyway
        import traceback
        traceback.print_exc()
        print("moto: %d passed, %d failed" % (passed, failed + 1))
        sys.exit(1)
