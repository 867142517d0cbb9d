#!/usr/bin/env python3
"""One oss2.resumable_upload, as a user of the official SDK would write it (the benchmark's
"seed" contender).

usage: oss2_upload.py ENDPOINT BUCKET KEY FILE THREADS CHECKPOINT_DIR PART_SIZE
Credentials from OSSUP_AK / OSSUP_SK. V4 signing, region cn-hangzhou. With an IP endpoint
(http://127.0.0.1:PORT) oss2 addresses the bucket path-style by itself. The multipart threshold
is the part size, so any file larger than one part goes multipart.
"""

import os
import sys

import oss2


def main():
    endpoint, bucket_name, key, path, threads, store, part = sys.argv[1:8]
    auth = oss2.ProviderAuthV4(
        oss2.credentials.StaticCredentialsProvider(os.environ["OSSUP_AK"], os.environ["OSSUP_SK"])
    )
    bucket = oss2.Bucket(auth, endpoint, bucket_name, region="cn-hangzhou")
    result = oss2.resumable_upload(
        bucket,
        key,
        path,
        store=oss2.ResumableStore(root=store),
        multipart_threshold=int(part),
        part_size=int(part),
        num_threads=int(threads),
    )
    if result.status != 200:
        print("oss2_upload: status %s" % result.status, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
