//! Outbound HTTP (webhooks and the external moderation hook): the `Tally-Signature`
//! signer, the rule for URLs an admin may point tally at, and the one HTTP client.
//!
//! The address rule is applied twice: when a URL is stored (its host resolved, every
//! address checked, 422 naming the field) and at every call, by the client's own
//! resolver, which hands the connector only public addresses. The second check is what
//! stops a name that resolved to a public address when stored and to `127.0.0.1` later
//! (DNS rebinding). `TALLY_WEBHOOK_ALLOW_PRIVATE=true` turns both off.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use hmac::{Hmac, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;

use crate::domain::FieldError;

/// Each attempt's bound (connect, send, answer): the contract's 10 s.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Tally-Signature` value for `body` sent at `t` (unix seconds):
/// `t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with the whole secret string.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// Whether `ip` is an address on the public internet: not loopback, private,
/// link-local, shared (CGNAT), documentation, benchmarking, multicast, broadcast,
/// reserved or unspecified; IPv4-mapped and NAT64 IPv6 addresses by their IPv4 part.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // 64:ff9b::/96 (NAT64) carries an IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return is_public_v4(Ipv4Addr::new(a, b, c, d));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d
                || s[0] == 0x0100 && s[1..4] == [0, 0, 0]) // discard-only 100::/64
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// Checks a URL an admin stores (`field` names it in the 422): http or https, a host,
/// and — unless `allow_private` — a host whose every resolved address is public.
pub async fn check_url(
    field: &str,
    raw: &str,
    allow_private: bool,
) -> Result<reqwest::Url, FieldError> {
    let bad = |m: &str| FieldError::new(field, m);
    if raw.len() > 2000 {
        return Err(bad("must be at most 2000 characters"));
    }
    let url = reqwest::Url::parse(raw).map_err(|_| bad("must be an absolute http or https URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    let Some(host) = url.host() else {
        return Err(bad("must name a host"));
    };
    if allow_private {
        return Ok(url);
    }
    let addrs: Vec<IpAddr> = match host {
        url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
        url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
        url::Host::Domain(name) => {
            let port = url.port_or_known_default().unwrap_or(80);
            let lookup = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::lookup_host((name, port)),
            )
            .await;
            match lookup {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                _ => return Err(bad("host does not resolve")),
            }
        }
    };
    if addrs.is_empty() {
        return Err(bad("host does not resolve"));
    }
    if addrs.iter().any(|ip| !is_public(*ip)) {
        return Err(bad(
            "must be a public address (loopback, private, link-local and other non-public \
             addresses are refused unless TALLY_WEBHOOK_ALLOW_PRIVATE=true)",
        ));
    }
    Ok(url)
}

/// The resolver of the outbound client: the system's, keeping only public addresses.
/// A name with none left fails the attempt (nothing is sent).
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{} has no public address", name.as_str()).into());
            }
            let addrs: Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// Makes rustls's aws-lc backend the process default. reqwest is built without its
/// ring provider (nothing else links ring), so a client built without a preconfigured
/// TLS set-up (tests, the bench) needs a default; `Outbound` itself brings its own.
/// Idempotent.
pub fn install_crypto_provider() {
    // Err only when one is installed already, which is what we want anyway.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The HTTP client for outbound calls, with the address rule built in.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow_private: bool,
}

impl Outbound {
    /// No redirects, no proxy, HTTP/1, `ATTEMPT_TIMEOUT` per attempt, rustls on the
    /// aws-lc backend with the webpki roots.
    pub fn new(allow_private: bool) -> Result<Self, String> {
        install_crypto_provider();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Outbound {
            client,
            allow_private,
        })
    }

    /// POSTs `body` (JSON) to `url` with `headers`, within `timeout` (at most
    /// `ATTEMPT_TIMEOUT`). An IP-literal host is checked here (the resolver never sees
    /// it). Returns the status and up to 64 KiB of the answer.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
        if !self.allow_private {
            let literal = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if literal.is_some_and(|ip| !is_public(ip)) {
                return Err("the address is not public".into());
            }
        }
        let mut req = self
            .client
            .post(parsed)
            .timeout(timeout.min(ATTEMPT_TIMEOUT))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let mut res = req.send().await.map_err(describe)?;
        let status = res.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(describe)? {
            if answer.len() + chunk.len() > 65_536 {
                return Err("answer larger than 64 KiB".into());
            }
            answer.extend_from_slice(&chunk);
        }
        Ok((status, answer))
    }
}

/// A short cause for the log and the deliveries listing (no URL: it may hold a token).
fn describe(e: reqwest::Error) -> String {
    use std::error::Error;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "bad answer"
    } else {
        "request failed"
    };
    match e.source() {
        Some(cause) => format!(
            "{kind}: {}",
            cause.to_string().chars().take(200).collect::<String>()
        ),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=".to_owned() + &expected_hex()
        );
    }

    fn expected_hex() -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"whsec_test").expect("key");
        mac.update(br#"1700000000.{"a":1}"#);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for (ip, public) in [
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
            ("224.0.0.1", false),
            ("198.18.0.1", false),
            ("::1", false),
            ("::", false),
            ("fe80::1", false),
            ("fd00::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("64:ff9b::a00:1", false),
            ("2001:db8::1", false),
            ("93.184.216.34", true),
            ("8.8.8.8", true),
            ("2606:4700::1111", true),
            ("::ffff:8.8.8.8", true),
        ] {
            let parsed: IpAddr = ip.parse().expect("ip");
            assert_eq!(is_public(parsed), public, "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_by_scheme_and_resolved_address() {
        for (url, ok) in [
            ("ftp://example.com/", false),
            ("not a url", false),
            ("http://127.0.0.1:9000/hook", false),
            ("http://localhost:9000/hook", false),
            ("http://[::1]/hook", false),
            ("http://169.254.169.254/latest", false),
            ("http://user:pw@93.184.216.34/", false),
            ("https://93.184.216.34/hook", true),
        ] {
            assert_eq!(check_url("url", url, false).await.is_ok(), ok, "{url}");
        }
        assert!(check_url("url", "http://127.0.0.1:9000/hook", true)
            .await
            .is_ok());
    }
}
