//! Who a request comes from: the TCP peer, or behind trusted proxies
//! (`TALLY_TRUSTED_PROXIES`) the address they forwarded. Used by the write limits and
//! by guests' idempotency keys.

use actix_web::{web, HttpRequest};

use crate::state::AppState;

/// The client's IP address: the TCP peer. `X-Forwarded-For` is not trusted (behind a
/// proxy every client shares the proxy's address; trusting a configured proxy is future
/// work).
pub fn client_ip(req: &HttpRequest) -> String {
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map_or(&[][..], |s| &s.settings.trusted_proxies[..]);
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    originating_ip(req.peer_addr().map(|a| a.ip()), &forwarded, trusted)
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// The client behind any trusted proxies: `X-Forwarded-For` is read only when the TCP
/// peer is a trusted proxy, from the right (the hop nearest to us), skipping trusted
/// proxies; the first untrusted address is the client. Anything a client wrote to the
/// left of that is never believed.
pub fn originating_ip(
    peer: Option<std::net::IpAddr>,
    forwarded: &[&str],
    trusted: &[ipnet::IpNet],
) -> Option<std::net::IpAddr> {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer?;
    if !is_trusted(&client) {
        return Some(client);
    }
    let hops = forwarded.iter().flat_map(|h| h.split(',')).map(str::trim);
    for hop in hops.collect::<Vec<_>>().into_iter().rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A malformed entry ends what can be believed.
            Err(_) => break,
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let nets: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let cases: [(&str, &[&str], &str, &str); 6] = [
            (
                "203.0.113.9",
                &["1.2.3.4"],
                "203.0.113.9",
                "untrusted peer: header ignored",
            ),
            (
                "10.0.0.2",
                &["198.51.100.7"],
                "198.51.100.7",
                "one trusted proxy",
            ),
            (
                "10.0.0.2",
                &["6.6.6.6, 198.51.100.7, 10.0.0.3"],
                "198.51.100.7",
                "spoofed left part ignored",
            ),
            (
                "10.0.0.2",
                &["6.6.6.6", "198.51.100.7"],
                "198.51.100.7",
                "header repeated",
            ),
            ("10.0.0.2", &[], "10.0.0.2", "no header"),
            (
                "10.0.0.2",
                &["garbage, 10.0.0.5"],
                "10.0.0.5",
                "malformed hop stops the walk",
            ),
        ];
        for (peer, xff, want, why) in cases {
            assert_eq!(
                originating_ip(Some(ip(peer)), xff, &nets),
                Some(ip(want)),
                "{why}"
            );
        }
        assert_eq!(
            originating_ip(Some(ip("10.0.0.2")), &["1.2.3.4"], &[]),
            Some(ip("10.0.0.2")),
            "nothing trusted"
        );
    }
}
