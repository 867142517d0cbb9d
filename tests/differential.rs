//! Differential test of `ossup::proto::sign` against the official SDKs (oss2 for OSS V4,
//! botocore for S3 SigV4). Ignored by default: `tests/differential/run.sh` makes a Python
//! venv, has `tests/differential/gen.py` sign seeded random requests with the SDKs, then runs
//! `cargo test --test differential -- --ignored --nocapture` with `OSSUP_DIFF_CASES` naming
//! the JSON file it wrote.
//!
//! For every case this test
//! 1. re-signs the request with ossup (`sign_headers`, or `presign_query` for presigned URLs)
//!    from the same inputs the SDK got, and requires the same signature; for presigned URLs
//!    every query parameter ossup adds must also be in the SDK's URL with the same value;
//! 2. feeds the request as the SDK finished it (its headers, including its Authorization in
//!    its own layout, or its signed URL's query) to `sign::verify`, which must accept it.
//!
//! The generator stays inside the range where the SDKs follow the protocol (see gen.py):
//! oss2 does not trim header values and keeps absent AdditionalHeaders in header mode, and
//! botocore replaces `x-amz-date` by `Date` when a `Date` header is present. Those inputs are
//! not generated; everything else (keys with spaces, `+`, `%`, `//`, `~`, non-ASCII, 1023
//! bytes; empty query values; STS tokens; Content-Type/Content-MD5; blacklisted S3 headers;
//! whitespace runs in S3 values; stale date headers; all methods) is.

use std::collections::BTreeMap;

use ossup::proto::sign::{self, Context, Credentials, Request, Scheme};
use serde_json::Value;

const MIN_CASES: usize = 500;

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or_default().to_string(),
                        p[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("case field {field} is not a string: {v}"))
}

/// Re-signs one case; returns a description of every disagreement.
fn check(case: &Value) -> Vec<String> {
    let id = s(case, "id");
    let mut problems = Vec::new();
    let scheme = match s(case, "scheme") {
        "oss" => Scheme::OssV4,
        "s3" => Scheme::S3V4,
        other => return vec![format!("{id}: unknown scheme {other}")],
    };
    let credentials = Credentials {
        access_key_id: s(case, "ak").into(),
        access_key_secret: s(case, "sk").into(),
        security_token: case["token"].as_str().map(String::from),
    };
    let method = s(case, "method");
    let bucket = case["bucket"].as_str();
    let key = case["key"].as_str();
    let path = match scheme {
        Scheme::OssV4 => format!("/{}/{}", bucket.unwrap_or(""), key.unwrap_or("")),
        Scheme::S3V4 => s(case, "path").to_string(),
    };
    let query = pairs(&case["query"]);
    let headers = pairs(&case["headers"]);
    let additional: Vec<String> = case["additional"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let additional: Vec<&str> = additional.iter().map(String::as_str).collect();
    let region = s(case, "region");
    let unix_time = case["unix_time"].as_i64().expect("unix_time");
    let ctx = Context {
        scheme,
        region,
        product: s(case, "product"),
        credentials: &credentials,
        unix_time,
        additional_headers: &additional,
        payload_sha256: case["payload_sha256"].as_str(),
    };
    let req = Request {
        method,
        bucket,
        key,
        path: &path,
        query: &query,
        headers: &headers,
    };
    let sdk = &case["sdk"];
    let want = s(sdk, "signature");

    let (ours, canonical) = match s(case, "mode") {
        "header" => {
            let signed = sign::sign_headers(&req, &ctx);
            (signed.signature, signed.canonical_request)
        }
        "query" => {
            let expires = case["expires"].as_u64().expect("expires");
            let p = sign::presign_query(&req, &ctx, expires);
            let sdk_query = pairs(&sdk["query"]);
            for pair in &p.query {
                if !sdk_query.contains(pair) {
                    problems.push(format!(
                        "{id}: query parameter {pair:?} not in the SDK's URL {}",
                        sdk["url"]
                    ));
                }
            }
            (p.signature, p.canonical_request)
        }
        other => return vec![format!("{id}: unknown mode {other}")],
    };
    if ours != want {
        problems.push(format!(
            "{id}: signature mismatch\n  sdk:  {want}\n  ours: {ours}\n  sdk authorization/url: {}\n  our canonical request:\n{canonical}\n  case: {case}",
            sdk.get("authorization").or_else(|| sdk.get("url")).unwrap_or(&Value::Null)
        ));
    }

    // The server side accepts the request exactly as the SDK finished it.
    let sdk_headers = pairs(&sdk["headers"]);
    let sdk_query = pairs(&sdk["query"]);
    let verdict = sign::verify(
        scheme,
        method,
        bucket,
        key,
        &path,
        &sdk_query,
        &sdk_headers,
        &credentials,
        region,
        unix_time,
    );
    if let Err(e) = verdict {
        problems.push(format!(
            "{id}: verify rejected the SDK's request: {e:?}\n  case: {case}"
        ));
    }
    problems
}

#[test]
#[ignore = "needs the SDK-signed cases: run tests/differential/run.sh"]
fn signatures_match_official_sdks() {
    let path = std::env::var("OSSUP_DIFF_CASES")
        .expect("OSSUP_DIFF_CASES must name the JSON written by tests/differential/gen.py (run tests/differential/run.sh)");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("cases JSON parses");
    let cases = doc["cases"].as_array().expect("cases list");
    assert!(
        cases.len() >= MIN_CASES,
        "only {} cases in {path}; at least {MIN_CASES} required",
        cases.len()
    );

    let mut counts: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut problems = Vec::new();
    for case in cases {
        let found = check(case);
        let entry = counts
            .entry((
                case["scheme"].as_str().unwrap_or("?").into(),
                case["mode"].as_str().unwrap_or("?").into(),
            ))
            .or_default();
        entry.0 += 1;
        if found.is_empty() {
            entry.1 += 1;
        }
        problems.extend(found);
    }
    println!(
        "differential: {} cases from {path} (SDKs {})",
        cases.len(),
        doc["sdk_versions"]
    );
    for ((scheme, mode), (n, ok)) in &counts {
        println!("  {scheme:>3} {mode:<6} {ok:>4}/{n:<4} agree");
    }
    for p in problems.iter().take(10) {
        println!("{p}\n");
    }
    assert!(
        problems.is_empty(),
        "{} disagreement(s) with the SDKs (first ones printed above)",
        problems.len()
    );
}
