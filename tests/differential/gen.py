#!/usr/bin/env python3
"""Signs seeded random requests with the official SDKs and writes them, with the SDKs'
signatures, as JSON for tests/differential.rs (which re-signs each case with ossup).

* OSS: oss2's ProviderAuthV4 (`_sign_request` for header mode, `_sign_url` for presigned
  URLs), with its clock pinned to the case's time.
* S3: botocore's S3SigV4Auth (header mode) and S3SigV4QueryAuth (presigned), with
  `get_current_datetime` pinned. The request is built the way botocore builds it: the URL
  path is the key encoded with percent_encode(safe='/~'), the query string comes from
  percent_encode_sequence, and Host comes from the URL unless a case sets it explicitly.

Usage: gen.py OUT.json [N] [SEED]   (defaults: N=800, SEED=20240102)

Inputs are chosen within the range where the SDKs agree with the protocol (see
tests/differential.rs for the list): no leading/trailing whitespace in OSS header values
(oss2 does not trim, the Go SDK and OSS do), AdditionalHeaders only for headers the request
carries with a value (oss2's header mode keeps absent ones), no `Date` header for botocore
(it then drops x-amz-date), and no duplicate header names or query keys.
"""

import datetime
import hashlib
import json
import random
import re
import sys
import urllib.parse

import botocore
import botocore.auth
import oss2
import oss2.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.utils import percent_encode, percent_encode_sequence
from oss2.credentials import StaticCredentialsProvider

# ------------------------------------------------------------------------------------------
# Pinned clocks

_NOW = [0]


def _now_naive():
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=_NOW[0])


class _PinnedDatetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        d = _now_naive()
        return cls(d.year, d.month, d.day, d.hour, d.minute, d.second)


oss2.auth.datetime = _PinnedDatetime
botocore.auth.get_current_datetime = lambda *a, **k: _now_naive()

# ------------------------------------------------------------------------------------------
# Random inputs

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
KEY_CHARS = ALNUM + " +%~!*()'$&=?#[]@,;:._-" + "/" * 6
NON_ASCII = ["文件", "目录", "é", "ü", "Ω", "🚀", "日本語", "ß", "ñ", "\u00a0", "\u3000"]
VALUE_CHARS = ALNUM + " +/=:;,._-()%&?#\"'"
# Python's str.split() (botocore's header trim) treats these as whitespace but SigV4 servers
# collapse only spaces/tabs: keep them out of S3 header values.
PY_EXTRA_WS = set("\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                  "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def rand_str(r, chars, lo, hi):
    return "".join(r.choice(chars) for _ in range(r.randint(lo, hi)))


def truncate_utf8(s, n):
    b = s.encode("utf-8")[:n]
    return b.decode("utf-8", errors="ignore")


def rand_key(r):
    kind = r.randrange(10)
    if kind == 0:
        # Exactly 1023 bytes (the OSS maximum), ASCII or mixed.
        base = "".join(r.choice([rand_str(r, KEY_CHARS, 1, 8), r.choice(NON_ASCII)]) for _ in range(400))
        key = truncate_utf8(base, 1023)
        while len(key.encode()) < 1023:
            key += "a"
        return key
    if kind == 1:
        return r.choice(["a//b", "//lead", "trail//", "./x/../y", "~user/~", "%20already%2Fencoded",
                         "a+b c", "100%", "?q=1#frag", "sp ace/ tab\tkey", "/leading-slash"])
    parts = []
    for _ in range(r.randint(1, 5)):
        if r.random() < 0.3:
            parts.append(r.choice(NON_ASCII))
        else:
            parts.append(rand_str(r, KEY_CHARS, 1, 12))
    return "".join(parts)


def rand_query(r):
    q = {}
    for _ in range(r.randint(0, 5)):
        k = r.choice(["uploads", "uploadId", "partNumber", "max-parts", "part-number-marker",
                      "encoding-type", "acl", "prefix", "delimiter", "marker", "+param", "|param",
                      "a b", "键", "x/y", "tagging", "versionId",
                      rand_str(r, ALNUM + "-_.~+|/ %", 1, 10)])
        v = r.choice(["", "", "0", "1000", "url", "gw-01/", "a b+c", "x=y&z", "值", "/%2F",
                      rand_str(r, VALUE_CHARS, 0, 16)])
        q[k] = v
    return q


def rand_value(r, s3):
    v = rand_str(r, VALUE_CHARS, 0, 24)
    if r.random() < 0.2:
        v += r.choice([n for n in NON_ASCII if n not in PY_EXTRA_WS])
    if s3:
        # botocore trims and collapses whitespace runs: exercise that.
        if r.random() < 0.4:
            v = r.choice([" ", "\t", "  "]) + v.replace(" ", r.choice(["  ", " \t ", "\t"])) + r.choice(["", " ", "\t "])
    else:
        v = v.strip(" \t")
    return v


def rand_secret(r):
    return rand_str(r, ALNUM + "/+=", 8, 40)


def rand_token(r):
    return r.choice([None, None, rand_str(r, ALNUM + "/+=.", 10, 300)])


def fixed_time(r):
    return r.randint(946684800, 4102444799)  # 2000-01-01 .. 2099-12-31


def sig_from_authorization(auth):
    m = re.search(r"Signature=([0-9a-f]{64})", auth)
    return m.group(1) if m else None


def plain_headers(h):
    return [[k, v] for k, v in h.items() if v is not None]


# ------------------------------------------------------------------------------------------
# OSS via oss2

OSS_OPTIONAL = ["Content-Type", "Content-MD5", "x-oss-meta-a", "X-Oss-Meta-Device", "X-OSS-Storage-Class",
                "x-oss-object-acl", "x-oss-forbid-overwrite", "Cache-Control", "Content-Disposition",
                "x-custom", "Range", "Content-Length", "Host", "Expect"]


def oss_case(r, i):
    _NOW[0] = t = fixed_time(r)
    ak = rand_str(r, ALNUM, 8, 24)
    sk = rand_secret(r)
    token = rand_token(r)
    cloudbox = r.random() < 0.15
    region = r.choice(["cn-hangzhou", "cn-shanghai", "ap-southeast-1", "us-west-1", "eu-central-1"])
    cloudbox_id = "cb-" + rand_str(r, ALNUM.lower(), 6, 12) if cloudbox else None
    product = "oss-cloudbox" if cloudbox else "oss"
    bucket = "b" + rand_str(r, "abcdefghijklmnopqrstuvwxyz0123456789-", 2, 30)
    bucket_level = r.random() < 0.1
    key = None if bucket_level else rand_key(r)
    method = r.choice(["GET", "PUT", "POST", "DELETE", "HEAD"])
    query = rand_query(r)
    headers = {}
    for name in r.sample(OSS_OPTIONAL, r.randint(0, 7)):
        if name == "Content-MD5":
            headers[name] = r.choice(["1B2M2Y8AsgTpgAmY7PhCfg==", "XrY7u+Ae7tCTyyK7j1rNww=="])
        elif name == "Host":
            headers[name] = bucket + ".oss-" + region + ".aliyuncs.com"
        elif name == "Content-Length":
            headers[name] = str(r.randint(0, 5 * 1024 ** 3))
        else:
            headers[name] = rand_value(r, s3=False)
    if r.random() < 0.1:
        headers["X-Oss-Date"] = "20000101T000000Z"  # stale: the signer must supersede it
    # AdditionalHeaders: only headers the request carries with a value; sometimes also names
    # that OSS signs anyway (both signers drop those), in random case and order.
    additional = None
    if r.random() < 0.4:
        carried = [k for k, v in headers.items() if v]
        additional = r.sample(carried, r.randint(0, len(carried)))
        additional = [a.upper() if r.random() < 0.2 else a for a in additional]
        if r.random() < 0.3:
            additional.append(r.choice(["x-oss-meta-a", "content-type", "Content-MD5"]))
        r.shuffle(additional)
    mode = "query" if r.random() < 0.2 else "header"
    expires = r.randint(1, 604800)

    auth = oss2.ProviderAuthV4(StaticCredentialsProvider(ak, sk, token))
    url = "https://" + bucket + ".oss-" + region + ".aliyuncs.com/" + urllib.parse.quote(key or "")
    req = oss2.http.Request(method, url, params=dict(query), headers=dict(headers),
                            region=region, product=product, cloudbox_id=cloudbox_id)
    case = {
        "id": f"oss-{i}", "scheme": "oss", "mode": mode, "method": method, "ak": ak, "sk": sk,
        "token": token, "region": cloudbox_id or region, "product": product, "unix_time": t,
        "bucket": bucket, "key": key, "query": [[k, v] for k, v in query.items()],
        "headers": [[k, v] for k, v in headers.items()], "additional": additional,
    }
    if mode == "header":
        auth._sign_request(req, bucket, key or "", additional)
        authorization = req.headers["authorization"]
        case["sdk"] = {
            "authorization": authorization,
            "signature": sig_from_authorization(authorization),
            "headers": plain_headers(req.headers),
            "query": [[k, v] for k, v in req.params.items()],
        }
    else:
        signed_url = auth._sign_url(req, bucket, key or "", expires, additional)
        case["expires"] = expires
        case["sdk"] = {
            "url": signed_url,
            "signature": req.params["x-oss-signature"],
            "headers": plain_headers(req.headers),
            "query": [[k, v] for k, v in req.params.items()],
        }
    return case


# ------------------------------------------------------------------------------------------
# S3 via botocore

S3_OPTIONAL = ["Content-Type", "Content-MD5", "x-amz-meta-a", "X-Amz-Meta-Device", "X-Amz-Storage-Class",
               "x-amz-acl", "Cache-Control", "Content-Disposition", "Content-Encoding", "x-custom",
               "Range", "Content-Length", "User-Agent", "Expect", "X-Amzn-Trace-Id", "Connection",
               "Transfer-Encoding", "x-oss-meta-b"]


def s3_case(r, i):
    _NOW[0] = t = fixed_time(r)
    ak = "AKIA" + rand_str(r, ALNUM.upper(), 12, 16)
    sk = rand_secret(r)
    token = rand_token(r)
    region = r.choice(["us-east-1", "eu-west-1", "cn-north-1", "auto", "garage", "minio-local"])
    bucket = "b" + rand_str(r, "abcdefghijklmnopqrstuvwxyz0123456789-", 2, 30)
    key = None if r.random() < 0.1 else rand_key(r)
    path_style = r.random() < 0.5
    endpoint = r.choice([("http", "127.0.0.1:9000"), ("https", "s3.example.com"), ("http", "localhost"),
                         ("https", "minio.local:443"), ("http", "[::1]:9000")])
    scheme_, host = endpoint
    if path_style:
        path = "/" + bucket + ("/" + key if key is not None else "")
        netloc = host
    else:
        path = "/" + (key or "")
        netloc = bucket + "." + host if not host.startswith("[") and not host[0].isdigit() else host
    method = r.choice(["GET", "PUT", "POST", "DELETE", "HEAD"])
    query = rand_query(r)
    mode = "query" if r.random() < 0.2 else "header"
    headers = {}
    for name in r.sample(S3_OPTIONAL, r.randint(0, 7)):
        if name == "Content-MD5":
            headers[name] = r.choice(["1B2M2Y8AsgTpgAmY7PhCfg==", "XrY7u+Ae7tCTyyK7j1rNww=="])
        elif name == "Content-Length":
            headers[name] = str(r.randint(0, 5 * 1024 ** 3))
        elif name == "Content-Type" and mode == "query":
            headers[name] = "text/plain"  # S3SigV4QueryAuth drops botocore's own form default
        else:
            headers[name] = rand_value(r, s3=True)
    if r.random() < 0.3:
        headers["Host"] = netloc.lower() if r.random() < 0.5 else netloc
    if mode == "header" and r.random() < 0.1:
        headers["X-Amz-Date"] = "20000101T000000Z"  # stale: the signer must supersede it
    body = b""
    if method in ("PUT", "POST") and mode == "header" and r.random() < 0.7:
        body = bytes(r.randrange(256) for _ in range(r.randint(0, 300)))

    url = f"{scheme_}://{netloc}{percent_encode(path, safe='/~')}"
    if query:
        url += "?" + percent_encode_sequence(query)
    creds = Credentials(ak, sk, token)
    req = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    # The Host the request will carry (botocore's own derivation when not set explicitly).
    sent_host = headers.get("Host") or botocore.auth._host_from_url(url)
    rust_headers = [[k, v] for k, v in headers.items()]
    if "Host" not in headers:
        rust_headers.append(["Host", sent_host])
    case = {
        "id": f"s3-{i}", "scheme": "s3", "mode": mode, "method": method, "ak": ak, "sk": sk,
        "token": token, "region": region, "product": "s3", "unix_time": t, "bucket": bucket,
        "key": key, "path": path, "query": [[k, v] for k, v in query.items()],
        "headers": rust_headers,
    }
    if mode == "header":
        # Payload: botocore hashes the body over http, or without Content-MD5; over https with
        # Content-MD5 and a streaming body it sends UNSIGNED-PAYLOAD.
        if scheme_ == "https" and "Content-MD5" in headers and r.random() < 0.7:
            req.context["has_streaming_input"] = True
            payload = None
        else:
            payload = hashlib.sha256(body).hexdigest()
        case["payload_sha256"] = payload
        botocore.auth.S3SigV4Auth(creds, "s3", region).add_auth(req)
        authorization = req.headers["Authorization"]
        sdk_headers = [[k, v] for k, v in req.headers.items()]
        if "Host" not in headers:
            sdk_headers.append(["Host", sent_host])
        case["sdk"] = {
            "authorization": authorization,
            "signature": sig_from_authorization(authorization),
            "headers": sdk_headers,
            "query": [[k, v] for k, v in query.items()],
        }
    else:
        expires = r.randint(1, 604800)
        case["expires"] = expires
        botocore.auth.S3SigV4QueryAuth(creds, "s3", region, expires=expires).add_auth(req)
        parts = urllib.parse.urlsplit(req.url)
        sdk_query = [list(p) for p in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
        sig = dict(sdk_query)["X-Amz-Signature"]
        sdk_headers = [[k, v] for k, v in req.headers.items()]
        if "Host" not in headers:
            sdk_headers.append(["Host", sent_host])
        case["sdk"] = {"url": req.url, "signature": sig, "headers": sdk_headers, "query": sdk_query}
    return case


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 800
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 20240102
    r = random.Random(seed)
    cases = []
    for i in range(n):
        cases.append(oss_case(r, i) if i % 2 == 0 else s3_case(r, i))
    doc = {
        "generated_by": "tests/differential/gen.py",
        "seed": seed,
        "sdk_versions": {"oss2": oss2.__version__, "botocore": botocore.__version__},
        "cases": cases,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    counts = {}
    for c in cases:
        counts[(c["scheme"], c["mode"])] = counts.get((c["scheme"], c["mode"]), 0) + 1
    print(f"gen.py: wrote {len(cases)} cases to {out} (seed {seed}, oss2 {oss2.__version__}, "
          f"botocore {botocore.__version__}): " + ", ".join(f"{k[0]}/{k[1]}={v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
