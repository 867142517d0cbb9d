#!/usr/bin/env python3
"""Checks that the official oss2 SDK (V4 signing) can upload to `ossup serve`.

Environment:
  OSSUP_ENDPOINT  e.g. http://127.0.0.1:9000 (an IP endpoint: oss2 then uses path style)
  OSSUP_BUCKET    an existing bucket on that server
  OSSUP_AK, OSSUP_SK  the credentials the server was started with
  OSSUP_REGION    optional, default cn-hangzhou

Uploads a generated 3 MiB file with oss2.resumable_upload in 256 KiB parts (num_threads 1
and 2), a 1 KiB file (below the multipart threshold, so PutObject), and an interrupted
upload that oss2 then resumes from its checkpoint (reading ossup serve's /_ossup/stats to see
that only missing parts were sent); downloads each with bucket.get_object and compares bytes (oss2
also checks x-oss-hash-crc64ecma itself). Exits non-zero on any mismatch or error.

Requires: pip install oss2
"""

import hashlib
import json
import os
import sys
import tempfile
import urllib.request

import oss2


def main():
    endpoint = os.environ["OSSUP_ENDPOINT"]
    bucket_name = os.environ["OSSUP_BUCKET"]
    ak = os.environ["OSSUP_AK"]
    sk = os.environ["OSSUP_SK"]
    region = os.environ.get("OSSUP_REGION", "cn-hangzhou")

    auth = oss2.ProviderAuthV4(oss2.credentials.StaticCredentialsProvider(ak, sk))
    bucket = oss2.Bucket(auth, endpoint, bucket_name, region=region, is_cname=False)

    failures = []
    tmp = tempfile.mkdtemp(prefix="ossup-oss2-")
    store = os.path.join(tmp, "checkpoints")

    def make_file(name, size, seed):
        path = os.path.join(tmp, name)
        block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
        with open(path, "wb") as f:
            left = size
            i = 0
            while left > 0:
                chunk = hashlib.sha256(block + bytes([i % 256])).digest() + block
                chunk = chunk[: min(left, len(chunk))]
                f.write(chunk)
                left -= len(chunk)
                i += 1
        with open(path, "rb") as f:
            return path, f.read()

    def check(key, expected):
        got = bucket.get_object(key).read()
        if got != expected:
            failures.append("%s: downloaded %d bytes, expected %d (or content differs)" % (key, len(got), len(expected)))
        else:
            print("ok   %s (%d bytes)" % (key, len(got)))

    def stats():
        # ossup serve's counters (always anonymous).
        url = endpoint.rstrip("/") + "/_ossup/stats"
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read())

    big_path, big = make_file("big.bin", 3 * 1024 * 1024, 1)
    for threads in (1, 2):
        key = "oss2/big-%d threads.bin" % threads
        result = oss2.resumable_upload(
            bucket,
            key,
            big_path,
            store=oss2.ResumableStore(root=store),
            multipart_threshold=256 * 1024,
            part_size=256 * 1024,
            num_threads=threads,
        )
        if result.status != 200:
            failures.append("%s: status %s" % (key, result.status))
        check(key, big)

    small_path, small = make_file("small.bin", 1024, 2)
    key = "oss2/small.bin"
    result = oss2.resumable_upload(bucket, key, small_path, multipart_threshold=256 * 1024)
    if result.status != 200:
        failures.append("%s: status %s" % (key, result.status))
    check(key, small)

    # Resume: interrupt an upload after a few parts (progress_callback raises), then run it
    # again with the same checkpoint store: oss2 lists the parts on the server (ListParts) and
    # uploads only the missing ones.
    key = "oss2/resumed.bin"
    part = 256 * 1024

    class Interrupt(Exception):
        pass

    def interrupt(consumed, total):
        if consumed >= 5 * part:
            raise Interrupt()

    before = stats()
    try:
        oss2.resumable_upload(
            bucket,
            key,
            big_path,
            store=oss2.ResumableStore(root=store),
            multipart_threshold=part,
            part_size=part,
            num_threads=1,
            progress_callback=interrupt,
        )
        failures.append("the interrupted upload did not stop")
    except Interrupt:
        pass
    middle = stats()
    if middle["open_uploads"] != before["open_uploads"] + 1:
        failures.append("interrupted upload: expected one open upload, stats %r" % (middle,))
    oss2.resumable_upload(
        bucket,
        key,
        big_path,
        store=oss2.ResumableStore(root=store),
        multipart_threshold=part,
        part_size=part,
        num_threads=2,
    )
    after = stats()
    total_parts = len(big) // part
    sent = after["parts_stored"] - before["parts_stored"]
    if not (total_parts <= sent < 2 * total_parts) or after["initiated"] != middle["initiated"]:
        failures.append("resume re-sent everything or re-initiated: %r -> %r -> %r" % (before, middle, after))
    check(key, big)

    # Multipart calls by hand: list with paging, abort, NoSuchUpload.
    key = "oss2/manual.bin"
    init = bucket.init_multipart_upload(key)
    for n in (1, 2, 3):
        bucket.upload_part(key, init.upload_id, n, big[(n - 1) * part : n * part])
    listed = [p.part_number for p in oss2.PartIterator(bucket, key, init.upload_id, max_parts=2)]
    if listed != [1, 2, 3]:
        failures.append("PartIterator with max_parts=2: %r" % (listed,))
    bucket.abort_multipart_upload(key, init.upload_id)
    try:
        bucket.list_parts(key, init.upload_id)
        failures.append("list_parts after abort did not fail")
    except oss2.exceptions.NoSuchUpload:
        pass

    # HEAD of a missing key maps to NoSuchKey via the x-oss-err header.
    try:
        bucket.get_object_meta("oss2/missing")
        failures.append("get_object_meta of a missing key did not fail")
    except oss2.exceptions.NotFound:
        pass

    # A wrong secret is rejected.
    bad = oss2.Bucket(
        oss2.ProviderAuthV4(oss2.credentials.StaticCredentialsProvider(ak, sk + "x")),
        endpoint,
        bucket_name,
        region=region,
    )
    try:
        bad.put_object("oss2/forbidden", b"x")
        failures.append("a wrong secret was accepted")
    except oss2.exceptions.ServerError as e:
        if e.code != "SignatureDoesNotMatch":
            failures.append("wrong secret: expected SignatureDoesNotMatch, got %s" % e.code)

    if failures:
        for f in failures:
            print("FAIL " + f)
        return 1
    print("oss2 compatibility: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
