//! Checks `ossup::proto::sign` against every vector in `tests/data/signing-vectors.json`
//! (OSS V4 and AWS SigV4 for S3, header and query modes): canonical request, string to sign,
//! signing key, signature, and the exact Authorization (header mode) or the presigned query
//! parameters (query mode). Each signed request is then fed to `sign::verify`, in the
//! Authorization layout we emit and, for OSS, in oss2's layout too.
//!
//! Conventions of the JSON (its `conventions` block) and the quirks that matter here:
//! * `query` and `headers` are raw, as the application sets them before signing; the signer
//!   adds the date, content-hash and token headers itself. Some vectors already carry
//!   `x-oss-content-sha256` / `x-amz-content-sha256` (kept, not added twice) or `x-amz-date`
//!   (superseded by the signer's own, which has the same value at the vector's time).
//! * The three C SDK vectors (`oss4-csdk-*`) have no `unix_time`: their time is `datetime`.
//!   They list `Content-Type: application/octet-stream` because the C SDK adds it for a key
//!   without an extension, and `Expect: ""`, which OSS does not sign.
//! * `aws4-s3-put-object-dollar-key` has both `Date` and `x-amz-date`; both are signed, as in
//!   the AWS example. (botocore's `add_auth` would drop `x-amz-date` when `Date` is present;
//!   that quirk is botocore's, and the vector was reproduced through its lower-level methods.)
//! * `aws4-s3-presigned-get` lists the `X-Amz-*` parameters among its `query`: those are what
//!   `presign_query` must produce, so they are removed from the input and compared with its
//!   output instead.
//! * Expected AWS Authorization strings use `,` separators (the S3 API Reference form); so does
//!   the signer.

use std::fmt::Write as _;

use ossup::proto::sign::{self, Context, Credentials, Request, Scheme};
use ossup::proto::time;
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/signing-vectors.json"
);

fn load() -> Value {
    let text = std::fs::read_to_string(VECTORS).expect("read tests/data/signing-vectors.json");
    serde_json::from_str(&text).expect("signing-vectors.json parses")
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("field {field} is not a string"))
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("list of pairs")
        .iter()
        .map(|p| {
            (
                p[0].as_str().expect("name").to_string(),
                p[1].as_str().expect("value").to_string(),
            )
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Collects mismatches of one vector instead of stopping at the first.
struct Check {
    id: String,
    failures: Vec<String>,
}

impl Check {
    fn eq(&mut self, what: &str, got: &str, want: &str) {
        if got != want {
            self.failures.push(format!(
                "{}: {what}\n    got:  {got:?}\n    want: {want:?}",
                self.id
            ));
        }
    }

    fn ok(&mut self, what: &str, cond: bool) {
        if !cond {
            self.failures.push(format!("{}: {what}", self.id));
        }
    }
}

/// The request as the server receives it: the application's headers, minus any the signer
/// superseded, plus the signer's.
fn received(headers: &[(String, String)], added: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| !added.iter().any(|(m, _)| m.eq_ignore_ascii_case(n)))
        .chain(added)
        .cloned()
        .collect()
}

fn check_vector(scheme: Scheme, v: &Value) -> Check {
    let mut c = Check {
        id: str_of(v, "id").to_string(),
        failures: Vec::new(),
    };
    let inter = &v["intermediate_from_own_impl"];
    let expected = &v["expected"];
    let query = pairs(&v["query"]);
    let headers = pairs(&v["headers"]);
    let method = str_of(v, "method");

    let (credentials, region, product, unix_time, bucket, key, path, additional, payload);
    match scheme {
        Scheme::OssV4 => {
            credentials = Credentials {
                access_key_id: str_of(v, "ak").into(),
                access_key_secret: str_of(v, "sk").into(),
                security_token: v["token"].as_str().map(String::from),
            };
            region = str_of(v, "region");
            product = str_of(v, "product");
            // The C SDK vectors give only the formatted time.
            unix_time = v["unix_time"]
                .as_i64()
                .or_else(|| time::parse_iso8601_basic(str_of(v, "datetime")))
                .expect("vector time");
            c.eq(
                "datetime",
                &time::iso8601_basic(unix_time),
                str_of(v, "datetime"),
            );
            bucket = v["bucket"].as_str();
            key = v["key"].as_str();
            path = format!("/{}/{}", bucket.unwrap_or(""), key.unwrap_or(""));
            additional = v["additional"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| s.as_str().expect("header name").to_string())
                        .collect()
                })
                .unwrap_or_default();
            payload = None;
        }
        Scheme::S3V4 => {
            credentials = Credentials {
                access_key_id: str_of(v, "ak").into(),
                access_key_secret: str_of(v, "sk").into(),
                security_token: None,
            };
            region = str_of(v, "region");
            product = str_of(v, "service");
            unix_time = time::parse_iso8601_basic(str_of(v, "amz_date")).expect("amz_date");
            bucket = None;
            key = None;
            path = str_of(v, "path").to_string();
            additional = Vec::<String>::new();
            payload = Some(str_of(v, "payload_hash"));
        }
    }
    let additional: Vec<&str> = additional.iter().map(String::as_str).collect();
    let ctx = Context {
        scheme,
        region,
        product,
        credentials: &credentials,
        unix_time,
        additional_headers: &additional,
        payload_sha256: payload,
    };

    let timestamp = time::iso8601_basic(unix_time);
    let key_bytes = sign::signing_key(
        scheme,
        &credentials.access_key_secret,
        &timestamp[..8],
        region,
        product,
    );
    c.eq(
        "signing key",
        &hex(&key_bytes),
        str_of(inter, "signing_key_hex"),
    );

    match str_of(v, "mode") {
        "header" => {
            let req = Request {
                method,
                bucket,
                key,
                path: &path,
                query: &query,
                headers: &headers,
            };
            let signed = sign::sign_headers(&req, &ctx);
            c.eq(
                "canonical request",
                &signed.canonical_request,
                str_of(inter, "canonical_request"),
            );
            c.eq(
                "string to sign",
                &signed.string_to_sign,
                str_of(inter, "string_to_sign"),
            );
            c.eq(
                "signature",
                &signed.signature,
                str_of(expected, "signature"),
            );
            c.eq(
                "Authorization",
                signed.authorization().unwrap_or(""),
                str_of(expected, "authorization"),
            );
            let date = signed
                .headers
                .iter()
                .find(|(n, _)| n == scheme.date_header());
            c.ok(
                "date header added",
                date.is_some_and(|(_, d)| *d == timestamp),
            );

            // The server side accepts what the client signed, in both OSS layouts.
            let mut got = received(&headers, &signed.headers);
            let verify = |h: &[(String, String)]| {
                sign::verify(
                    scheme,
                    method,
                    bucket,
                    key,
                    &path,
                    &query,
                    h,
                    &credentials,
                    region,
                    unix_time,
                )
            };
            c.ok("verify (emitted layout)", verify(&got).is_ok());
            if let Some(oss2) = expected["authorization_oss2_style"].as_str() {
                got.iter_mut()
                    .find(|(n, _)| n == "Authorization")
                    .expect("Authorization")
                    .1 = oss2.to_string();
                c.ok("verify (oss2 layout)", verify(&got).is_ok());
            }
        }
        "query" => {
            // For S3 the vector's query already holds the X-Amz-* parameters we must produce.
            let (auth_params, app_query): (Vec<_>, Vec<_>) = query
                .iter()
                .cloned()
                .partition(|(k, _)| scheme == Scheme::S3V4 && k.starts_with("X-Amz-"));
            let req = Request {
                method,
                bucket,
                key,
                path: &path,
                query: &app_query,
                headers: &headers,
            };
            let expires = v["expires"].as_u64().expect("expires");
            let p = sign::presign_query(&req, &ctx, expires);
            c.eq(
                "canonical request",
                &p.canonical_request,
                str_of(inter, "canonical_request"),
            );
            c.eq(
                "string to sign",
                &p.string_to_sign,
                str_of(inter, "string_to_sign"),
            );
            c.eq("signature", &p.signature, str_of(expected, "signature"));
            let sig_name = if scheme == Scheme::OssV4 {
                "x-oss-signature"
            } else {
                "X-Amz-Signature"
            };
            c.ok(
                "signature parameter",
                p.query.last() == Some(&(sig_name.to_string(), p.signature.clone())),
            );
            let mut want: Vec<(String, String)> = auth_params;
            if let Some(checked) = expected["query_params_checked"].as_object() {
                want.extend(
                    checked
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().expect("value").to_string())),
                );
            }
            for (k, val) in &want {
                let got = p
                    .query
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.as_str());
                c.eq(
                    &format!("query parameter {k}"),
                    got.unwrap_or("<absent>"),
                    val,
                );
            }
            let mut full = app_query.clone();
            full.extend(p.query.iter().cloned());
            let r = sign::verify(
                scheme,
                method,
                bucket,
                key,
                &path,
                &full,
                &headers,
                &credentials,
                region,
                unix_time,
            );
            c.ok("verify presigned", r.is_ok());
        }
        other => c.failures.push(format!("{}: unknown mode {other}", c.id)),
    }
    c
}

fn run_section(section: &str, scheme: Scheme) -> (usize, Vec<String>) {
    let all = load();
    let vectors = all[section].as_array().expect("section is a list");
    let mut failures = Vec::new();
    for v in vectors {
        let c = check_vector(scheme, v);
        println!(
            "{:<52} {}",
            c.id,
            if c.failures.is_empty() {
                "ok"
            } else {
                "FAILED"
            }
        );
        failures.extend(c.failures);
    }
    (vectors.len(), failures)
}

#[test]
fn oss_v4_vectors() {
    let (n, failures) = run_section("oss_v4", Scheme::OssV4);
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(n, 25, "OSS V4 vector count");
}

#[test]
fn aws_sigv4_s3_vectors() {
    let (n, failures) = run_section("aws_sigv4_s3", Scheme::S3V4);
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(n, 8, "S3 SigV4 vector count");
}

#[test]
fn all_33_vectors_present_and_cover_both_modes() {
    let all = load();
    assert_eq!(all["summary"]["vectors"], 33);
    let mut total = 0;
    let mut modes = std::collections::BTreeMap::new();
    for section in ["oss_v4", "aws_sigv4_s3"] {
        for v in all[section].as_array().expect("section") {
            total += 1;
            *modes
                .entry((section, str_of(v, "mode").to_string()))
                .or_insert(0) += 1;
        }
    }
    assert_eq!(total, 33);
    assert_eq!(
        modes.len(),
        4,
        "header and query modes in both sections: {modes:?}"
    );
}

#[test]
fn tampered_vector_is_rejected() {
    // The first OSS vector, with its object key changed after signing.
    let all = load();
    let v = &all["oss_v4"][0];
    let c = check_vector(Scheme::OssV4, v);
    assert!(c.failures.is_empty());
    let credentials = Credentials {
        access_key_id: "ak".into(),
        access_key_secret: "sk".into(),
        security_token: None,
    };
    let query = pairs(&v["query"]);
    let headers = pairs(&v["headers"]);
    let unix_time = v["unix_time"].as_i64().expect("time");
    let req = Request {
        method: "PUT",
        bucket: Some("bucket"),
        key: Some("1234+-/123/1.txt"),
        path: "/bucket/1234+-/123/1.txt",
        query: &query,
        headers: &headers,
    };
    let ctx = Context {
        scheme: Scheme::OssV4,
        region: "cn-hangzhou",
        product: "oss",
        credentials: &credentials,
        unix_time,
        additional_headers: &[],
        payload_sha256: None,
    };
    let signed = sign::sign_headers(&req, &ctx);
    let got = received(&headers, &signed.headers);
    let r = sign::verify(
        Scheme::OssV4,
        "PUT",
        Some("bucket"),
        Some("1234 -/123/1.txt"),
        "/bucket/1234 -/123/1.txt",
        &query,
        &got,
        &credentials,
        "cn-hangzhou",
        unix_time,
    );
    assert!(
        matches!(r, Err(sign::VerifyError::Mismatch { .. })),
        "{r:?}"
    );
}
