//! Proxy decisions: parsing a proxy URL, choosing the proxy for an endpoint from the
//! environment the way curl reads it, `NO_PROXY` matching, rendering `CONNECT` and parsing the
//! proxy's answer (bounded), and the Happy Eyeballs (RFC 8305) attempt order.
//!
//! Owns: every decision about *whether* and *how* to go through a proxy.
//!
//! Must not: open sockets, read the environment or the clock. The environment comes in as a
//! lookup function; bytes come in as slices. `crate::io::conn` carries the decisions out.
//!
//! For `http://` endpoints ossup also uses `CONNECT` (not absolute-form requests): one code path
//! for both schemes, the request bytes that are signed are exactly the bytes the server sees,
//! and a proxy cannot rewrite headers that are covered by the signature.

use core::fmt;
use core::net::IpAddr;
use core::time::Duration;

use base64::Engine as _;

/// Longest proxy answer head (status line and headers) ossup reads before giving up.
pub const MAX_ANSWER_HEAD: usize = 8 * 1024;

/// Scheme of the proxy itself (how ossup talks to the proxy, not to the endpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyScheme {
    /// Plain TCP to the proxy, then `CONNECT`.
    Http,
    /// TLS to the proxy (its name verified), then `CONNECT` inside that TLS.
    Https,
}

/// A parsed proxy URL. The password is a secret: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// How to talk to the proxy.
    pub scheme: ProxyScheme,
    /// Host name or IP literal (without brackets).
    pub host: String,
    /// Port (default 1080 for `http://` as curl does, 443 for `https://`).
    pub port: u16,
    /// Basic credentials, percent-decoded: (user, password).
    auth: Option<(String, String)>,
}

impl ProxyUrl {
    /// Parse `scheme://[user[:password]@]host[:port][/]`. A URL without a scheme is taken as
    /// `http://`, as curl does. Other schemes (socks) are refused with a reason.
    pub fn parse(s: &str) -> Result<ProxyUrl, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("proxy URL is empty".into());
        }
        let (scheme, rest) = match s.find("://") {
            Some(i) => {
                let sc = s[..i].to_ascii_lowercase();
                let sc = match sc.as_str() {
                    "http" => ProxyScheme::Http,
                    "https" => ProxyScheme::Https,
                    other => {
                        return Err(format!(
                            "proxy scheme {:?} is not supported (use http:// or https://)",
                            other.escape_debug().to_string()
                        ))
                    }
                };
                (sc, &s[i + 3..])
            }
            None => (ProxyScheme::Http, s),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err("proxy URL must not have a path".into());
        }
        let (auth, hostport) = match rest.rfind('@') {
            Some(i) => {
                let ui = &rest[..i];
                let (u, p) = match ui.find(':') {
                    Some(j) => (&ui[..j], &ui[j + 1..]),
                    None => (ui, ""),
                };
                (Some((pct_decode(u)?, pct_decode(p)?)), &rest[i + 1..])
            }
            None => (None, rest),
        };
        let default_port = match scheme {
            ProxyScheme::Http => 1080,
            ProxyScheme::Https => 443,
        };
        let (host, port) = split_host_port(hostport, default_port)?;
        if host.is_empty() {
            return Err("proxy URL has no host".into());
        }
        Ok(ProxyUrl {
            scheme,
            host,
            port,
            auth,
        })
    }

    /// The user name, if the URL carried credentials.
    pub fn user(&self) -> Option<&str> {
        self.auth.as_ref().map(|(u, _)| u.as_str())
    }

    /// The `Proxy-Authorization` header value, if credentials were given.
    pub fn basic_auth(&self) -> Option<String> {
        self.auth.as_ref().map(|(u, p)| {
            let raw = format!("{u}:{p}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sc = match self.scheme {
            ProxyScheme::Http => "http",
            ProxyScheme::Https => "https",
        };
        let user = match &self.auth {
            Some((u, _)) => format!("{}:***@", u.escape_debug()),
            None => String::new(),
        };
        if self.host.contains(':') {
            write!(f, "{sc}://{user}[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{sc}://{user}{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

fn split_host_port(hp: &str, default_port: u16) -> Result<(String, u16), String> {
    if let Some(r) = hp.strip_prefix('[') {
        let end = r.find(']').ok_or("proxy URL has an unclosed [")?;
        let host = &r[..end];
        let after = &r[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default_port,
            None => return Err("proxy URL has junk after ]".into()),
        };
        return Ok((host.to_string(), port));
    }
    match hp.rfind(':') {
        Some(i) => Ok((hp[..i].to_ascii_lowercase(), parse_port(&hp[i + 1..])?)),
        None => Ok((hp.to_ascii_lowercase(), default_port)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("proxy URL has a bad port".into()),
    }
}

fn pct_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b
                .get(i + 1..i + 3)
                .ok_or("bad percent escape in proxy URL")?;
            let h = core::str::from_utf8(h).map_err(|_| "bad percent escape in proxy URL")?;
            let v = u8::from_str_radix(h, 16).map_err(|_| "bad percent escape in proxy URL")?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "proxy credentials are not UTF-8".into())
}

/// What the user asked for on the command line or the board. `Debug` never shows an
/// explicit URL (it may carry a password).
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ProxySetting {
    /// Read the environment (the default).
    #[default]
    FromEnv,
    /// `--proxy URL` / board key `proxy`: use this, ignoring the environment (but not `NO_PROXY`).
    Explicit(String),
    /// `--no-proxy`: connect directly whatever the environment says.
    Disabled,
}

impl fmt::Debug for ProxySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::FromEnv => f.write_str("FromEnv"),
            ProxySetting::Disabled => f.write_str("Disabled"),
            ProxySetting::Explicit(u) => match ProxyUrl::parse(u) {
                Ok(p) => write!(f, "Explicit({p:?})"),
                Err(_) => f.write_str("Explicit(<unparsable>)"),
            },
        }
    }
}

/// Choose the proxy for an endpoint, as curl does: `NO_PROXY`/`no_proxy` first, then for https
/// endpoints `https_proxy`/`HTTPS_PROXY`, for http endpoints `http_proxy` (lower case only for
/// http, as curl, since `HTTP_PROXY` can be set by a CGI request header), then
/// `all_proxy`/`ALL_PROXY`. Lower case wins over upper case. Empty values count as unset.
///
/// Returns `Ok(None)` for a direct connection.
pub fn choose(
    setting: &ProxySetting,
    https: bool,
    host: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ProxyUrl>, String> {
    let get = |names: &[&str]| -> Option<String> {
        names
            .iter()
            .filter_map(|n| env(n))
            .find(|v| !v.trim().is_empty())
    };
    if *setting == ProxySetting::Disabled {
        return Ok(None);
    }
    if let Some(np) = get(&["no_proxy", "NO_PROXY"]) {
        if no_proxy_matches(&np, host) {
            return Ok(None);
        }
    }
    let url = match setting {
        ProxySetting::Explicit(u) => Some(u.clone()),
        ProxySetting::Disabled => None,
        ProxySetting::FromEnv => {
            let scheme_var = if https {
                get(&["https_proxy", "HTTPS_PROXY"])
            } else {
                get(&["http_proxy"])
            };
            scheme_var.or_else(|| get(&["all_proxy", "ALL_PROXY"]))
        }
    };
    url.map(|u| ProxyUrl::parse(&u)).transpose()
}

/// Does the comma-separated `NO_PROXY` list exclude `host`? Entries: `*` (everything), a host
/// name matching itself and its subdomains (`example.com` and `.example.com` both match
/// `a.example.com`; `.example.com` also matches `example.com`, as curl 7.86+), an IP literal
/// (exact), or a CIDR (`10.0.0.0/8`, `fd00::/8`). Entries may carry a `:port`, which is ignored.
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    for raw in list.split(',') {
        let e = raw.trim();
        if e.is_empty() {
            continue;
        }
        if e == "*" {
            return true;
        }
        if let Some((net, bits)) = e.split_once('/') {
            if let (Some(ip), Ok(net), Ok(bits)) = (host_ip, net.parse::<IpAddr>(), bits.parse()) {
                if cidr_contains(net, bits, ip) {
                    return true;
                }
            }
            continue;
        }
        let e = e.trim_start_matches('[');
        let e = match e.split_once(']') {
            Some((h, _)) => h,
            None => e,
        };
        if let Ok(ip) = e.parse::<IpAddr>() {
            if host_ip == Some(ip) {
                return true;
            }
            continue;
        }
        // strip a :port
        let e = match e.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|c| c.is_ascii_digit()) => h,
            _ => e,
        };
        let e = e.trim_end_matches('.').to_ascii_lowercase();
        let bare = e.trim_start_matches('.');
        if bare.is_empty() {
            continue;
        }
        if host == bare
            || (host.len() > bare.len()
                && host.ends_with(bare)
                && host.as_bytes()[host.len() - bare.len() - 1] == b'.')
        {
            return true;
        }
    }
    false
}

fn cidr_contains(net: IpAddr, bits: u32, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Render the `CONNECT` request for `host:port` (IPv6 literals bracketed).
pub fn render_connect(proxy: &ProxyUrl, host: &str, port: u16) -> Vec<u8> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut s = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(a) = proxy.basic_auth() {
        s.push_str("Proxy-Authorization: ");
        s.push_str(&a);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// What the proxy said to `CONNECT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectAnswer {
    /// More bytes are needed to see the end of the head.
    Partial,
    /// 2xx: the tunnel is open; `head_len` bytes of the buffer were the answer's head (bytes
    /// after it, if any, already belong to the tunnel).
    Open {
        /// Length of the answer head in the buffer.
        head_len: usize,
    },
    /// 407 (or 401, which some proxies send): the proxy wants (other) credentials. A
    /// configuration error.
    AuthRequired(u16),
    /// The proxy refused the tunnel with this status; 403/502/503/504 and other 5xx are retried.
    Refused {
        /// The status code.
        status: u16,
        /// The reason phrase, escaped and bounded.
        reason: String,
        /// Whether a retry may help.
        retryable: bool,
    },
}

/// Parse the proxy's answer to `CONNECT` from what has been read so far. Errors name what is
/// wrong (too long, not HTTP).
pub fn parse_connect_answer(buf: &[u8]) -> Result<ConnectAnswer, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_ANSWER_HEAD {
                Err(format!(
                    "proxy answer to CONNECT is longer than {MAX_ANSWER_HEAD} bytes"
                ))
            } else {
                Ok(ConnectAnswer::Partial)
            }
        }
        Ok(httparse::Status::Complete(n)) => {
            let status = resp.code.unwrap_or(0);
            let reason: String = resp
                .reason
                .unwrap_or("")
                .chars()
                .take(80)
                .flat_map(char::escape_debug)
                .collect();
            Ok(match status {
                200..=299 => ConnectAnswer::Open { head_len: n },
                // A 401 to CONNECT can only be the proxy's own (tinyproxy sends it).
                401 | 407 => ConnectAnswer::AuthRequired(status),
                s => ConnectAnswer::Refused {
                    status: s,
                    reason,
                    retryable: s == 403 || s == 408 || s == 429 || (500..=599).contains(&s),
                },
            })
        }
        Err(e) => Err(format!("proxy answer to CONNECT is not HTTP ({e})")),
    }
}

/// Happy Eyeballs (RFC 8305 §4): the order in which to try resolved addresses, as indices
/// into `addrs`, alternating families starting with the family of the first address (the
/// resolver's preference), each family keeping the resolver's order.
pub fn eyeballs_order(addrs: &[IpAddr]) -> Vec<usize> {
    let first_v6 = addrs.first().is_some_and(|a| a.is_ipv6());
    let (a, b): (Vec<usize>, Vec<usize>) =
        (0..addrs.len()).partition(|&i| addrs[i].is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(addrs.len());
    for k in 0..a.len().max(b.len()) {
        out.extend(a.get(k));
        out.extend(b.get(k));
    }
    out
}

/// The stagger between connection attempts (RFC 8305 recommends 250 ms).
pub const EYEBALLS_STAGGER: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn proxy_url_parses_auth_percent_decoded_and_hides_password() {
        let p = ProxyUrl::parse("http://us%40er:p%3Ass@Proxy.Local:3128/").unwrap();
        assert_eq!(p.scheme, ProxyScheme::Http);
        assert_eq!(p.host, "proxy.local");
        assert_eq!(p.port, 3128);
        assert_eq!(p.user(), Some("us@er"));
        let shown = format!("{p} {p:?}");
        assert!(
            !shown.contains("p:ss") && !shown.contains("p%3Ass"),
            "{shown}"
        );
        assert_eq!(
            p.basic_auth().unwrap(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("us@er:p:ss")
            )
        );
    }

    #[test]
    fn proxy_url_defaults_and_refusals() {
        let p = ProxyUrl::parse("proxy:8080").unwrap();
        assert_eq!((p.scheme, p.port), (ProxyScheme::Http, 8080));
        assert_eq!(ProxyUrl::parse("http://p").unwrap().port, 1080);
        let p = ProxyUrl::parse("https://[::1]").unwrap();
        assert_eq!(
            (p.scheme, p.host.as_str(), p.port),
            (ProxyScheme::Https, "::1", 443)
        );
        assert!(ProxyUrl::parse("socks5://p:1")
            .unwrap_err()
            .contains("socks5"));
        assert!(ProxyUrl::parse("http://p:0").is_err());
        assert!(ProxyUrl::parse("http://p:1/x").is_err());
        assert!(ProxyUrl::parse("http://u:%zz@p").is_err());
        assert!(ProxyUrl::parse("").is_err());
    }

    #[test]
    fn no_proxy_matches_suffixes_dots_ips_cidrs_and_star() {
        let l = "example.com, .corp.net,10.0.0.0/8, 192.168.1.7,fd00::/8,[::1],local:80";
        assert!(no_proxy_matches(l, "example.com"));
        assert!(no_proxy_matches(l, "a.example.com"));
        assert!(!no_proxy_matches(l, "badexample.com"));
        assert!(no_proxy_matches(l, "corp.net"));
        assert!(no_proxy_matches(l, "x.corp.net"));
        assert!(no_proxy_matches(l, "10.2.3.4"));
        assert!(!no_proxy_matches(l, "11.2.3.4"));
        assert!(no_proxy_matches(l, "192.168.1.7"));
        assert!(!no_proxy_matches(l, "192.168.1.8"));
        assert!(no_proxy_matches(l, "fd12::1"));
        assert!(no_proxy_matches(l, "[::1]"));
        assert!(no_proxy_matches(l, "LOCAL"));
        assert!(!no_proxy_matches(l, "oss-cn-hangzhou.aliyuncs.com"));
        assert!(no_proxy_matches("*", "anything"));
        assert!(!no_proxy_matches("", "anything"));
    }

    #[test]
    fn choose_reads_env_like_curl() {
        let e = env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
            ("HTTP_PROXY", "http://cgi:3"),
            ("ALL_PROXY", "http://all:4"),
            ("no_proxy", "skip.me"),
        ]);
        let c = |s: &ProxySetting, https, h| choose(s, https, h, &e).unwrap();
        assert_eq!(c(&ProxySetting::FromEnv, true, "h").unwrap().host, "lower");
        // HTTP_PROXY (upper case) is ignored for http endpoints, as curl: falls to ALL_PROXY.
        assert_eq!(c(&ProxySetting::FromEnv, false, "h").unwrap().host, "all");
        assert_eq!(c(&ProxySetting::FromEnv, true, "a.skip.me"), None);
        let ex = ProxySetting::Explicit("http://mine:5".into());
        assert_eq!(c(&ex, true, "h").unwrap().host, "mine");
        assert_eq!(c(&ProxySetting::Disabled, true, "h"), None);
        let none = env(&[("https_proxy", "  ")]);
        assert_eq!(
            choose(&ProxySetting::FromEnv, true, "h", &none).unwrap(),
            None
        );
        let bad = env(&[("https_proxy", "socks5://x:1")]);
        assert!(choose(&ProxySetting::FromEnv, true, "h", &bad).is_err());
    }

    #[test]
    fn connect_is_rendered_with_basic_auth() {
        let p = ProxyUrl::parse("http://u:p@px:3128").unwrap();
        let r = String::from_utf8(render_connect(&p, "b.example.com", 443)).unwrap();
        assert_eq!(
            r,
            "CONNECT b.example.com:443 HTTP/1.1\r\nHost: b.example.com:443\r\n\
             Proxy-Authorization: Basic dTpw\r\n\r\n"
        );
        let p = ProxyUrl::parse("http://px:3128").unwrap();
        let r = String::from_utf8(render_connect(&p, "::1", 9000)).unwrap();
        assert!(r.starts_with("CONNECT [::1]:9000 HTTP/1.1\r\n"));
        assert!(!r.contains("Proxy-Authorization"));
    }

    #[test]
    fn connect_answers_are_classified_and_bounded() {
        assert_eq!(
            parse_connect_answer(b"HTTP/1.1 200 Connection established\r\n\r\nXY").unwrap(),
            ConnectAnswer::Open { head_len: 39 }
        );
        assert_eq!(
            parse_connect_answer(b"HTTP/1.1 200 OK\r\n").unwrap(),
            ConnectAnswer::Partial
        );
        assert_eq!(
            parse_connect_answer(b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n").unwrap(),
            ConnectAnswer::AuthRequired(407)
        );
        assert_eq!(
            parse_connect_answer(b"HTTP/1.0 401 Unauthorized\r\nContent-Length: 3\r\n\r\n")
                .unwrap(),
            ConnectAnswer::AuthRequired(401),
            "tinyproxy answers a CONNECT without credentials with 401"
        );
        for (s, retry) in [(403, true), (502, true), (503, true), (400, false)] {
            let a = format!("HTTP/1.1 {s} No\r\n\r\n");
            match parse_connect_answer(a.as_bytes()).unwrap() {
                ConnectAnswer::Refused {
                    status,
                    reason,
                    retryable,
                } => {
                    assert_eq!((status, retryable), (s, retry));
                    assert_eq!(reason, "No");
                }
                other => panic!("{other:?}"),
            }
        }
        let long = vec![b'X'; MAX_ANSWER_HEAD];
        let mut v = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        v.extend_from_slice(&long);
        assert!(parse_connect_answer(&v).unwrap_err().contains("longer"));
        assert!(parse_connect_answer(b"SSH-2.0-x\r\n\r\n").is_err());
    }

    #[test]
    fn eyeballs_interleaves_families_starting_with_the_first() {
        let a: Vec<IpAddr> = ["::1", "::2", "127.0.0.1", "127.0.0.2", "::3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let o: Vec<String> = eyeballs_order(&a)
            .iter()
            .map(|&i| a[i].to_string())
            .collect();
        assert_eq!(o, ["::1", "127.0.0.1", "::2", "127.0.0.2", "::3"]);
        assert!(eyeballs_order(&[]).is_empty());
    }
}
