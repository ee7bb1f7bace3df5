//! Who may do what: anyone who reaches the address may look; only who holds the token `kiln
//! serve` printed may approve or reject.
//!
//! - The token is random per start. Visiting any page with `?token=` sets it as a cookie
//!   (HttpOnly, SameSite=Strict; its name carries the port, as cookies do not tell ports apart)
//!   and redirects to the page without it, so it does not stay in the address bar or history.
//! - A form that changes something carries the token twice: in the cookie and in a hidden field
//!   (double submit). Another site can make a browser send neither: SameSite=Strict keeps the
//!   cookie off cross-site requests, and the page that holds the field is not readable to it.
//! - The Host header must be the address served or `localhost`: a name that an attacker's DNS
//!   points at 127.0.0.1 (DNS rebinding) gets 421 before any page is made.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, HOST, ORIGIN};

/// A new token: 244 random bits (two v4 UUIDs), as 64 hex digits.
pub fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Compares without stopping at the first difference, so the time taken says nothing of how
/// much of a guess was right.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The cookie's name for a server on `addr`.
pub fn cookie_name(addr: SocketAddr) -> String {
    format!("kiln_token_{}", addr.port())
}

/// The `Set-Cookie` value that hands the browser the token.
pub fn set_cookie(addr: SocketAddr, token: &str) -> String {
    format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict",
        cookie_name(addr)
    )
}

/// The token the request's cookie holds, if any.
pub fn cookie_token(headers: &HeaderMap, addr: SocketAddr) -> Option<String> {
    let name = cookie_name(addr);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether the request's cookie holds the server's token.
pub fn has_token(headers: &HeaderMap, addr: SocketAddr, token: &str) -> bool {
    cookie_token(headers, addr).is_some_and(|t| same(&t, token))
}

/// Whether the Host header names this server: `localhost`, or an IP address (the one bound, or
/// any when bound to all of them), with the port bound. A name other than localhost is refused:
/// that is what DNS rebinding needs.
pub fn host_allowed(headers: &HeaderMap, addr: SocketAddr) -> bool {
    // Exactly one: which of two a proxy or a cache would take is anyone's guess.
    let mut hosts = headers.get_all(HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return false;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let Some((name, port)) = split_host(host) else {
        return false;
    };
    if port != Some(addr.port()) && !(port.is_none() && addr.port() == 80) {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip == addr.ip() || addr.ip().is_unspecified(),
        Err(_) => false,
    }
}

/// Whether a request that changes something comes from this server's own pages: its Origin,
/// when the browser sends one, is this Host.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    match (origin.to_str().ok(), host) {
        (Some(origin), Some(host)) => origin == format!("http://{host}"),
        _ => false,
    }
}

/// `name[:port]` or `[v6][:port]`; `None` when the port is not a number.
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        match after {
            "" => (name, None),
            p => (name, Some(p.strip_prefix(':')?)),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    Some((name, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(axum::http::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    #[test]
    fn the_bound_address_and_localhost_are_the_only_hosts() {
        let addr: SocketAddr = "127.0.0.1:4321".parse().expect("addr");
        assert!(host_allowed(&headers(&[(HOST, "127.0.0.1:4321")]), addr));
        assert!(host_allowed(&headers(&[(HOST, "localhost:4321")]), addr));
        assert!(host_allowed(&headers(&[(HOST, "LocalHost:4321")]), addr));
        assert!(!host_allowed(
            &headers(&[(HOST, "evil.example:4321")]),
            addr
        ));
        assert!(!host_allowed(&headers(&[(HOST, "127.0.0.1:80")]), addr));
        assert!(!host_allowed(&headers(&[(HOST, "127.0.0.2:4321")]), addr));
        assert!(!host_allowed(
            &headers(&[(HOST, "localhost.evil.example:4321")]),
            addr
        ));
        assert!(!host_allowed(&HeaderMap::new(), addr));
        let two = headers(&[(HOST, "127.0.0.1:4321"), (HOST, "evil.example:4321")]);
        assert!(!host_allowed(&two, addr));
        let v6: SocketAddr = "[::1]:4321".parse().expect("addr");
        assert!(host_allowed(&headers(&[(HOST, "[::1]:4321")]), v6));
        let any: SocketAddr = "0.0.0.0:4321".parse().expect("addr");
        assert!(host_allowed(&headers(&[(HOST, "192.168.1.9:4321")]), any));
        assert!(!host_allowed(
            &headers(&[(HOST, "rebind.example:4321")]),
            any
        ));
    }

    #[test]
    fn the_cookie_of_this_port_is_read() {
        let addr: SocketAddr = "127.0.0.1:4321".parse().expect("addr");
        let h = headers(&[(COOKIE, "a=b; kiln_token_9999=other; kiln_token_4321=tok")]);
        assert_eq!(cookie_token(&h, addr).as_deref(), Some("tok"));
        assert!(has_token(&h, addr, "tok"));
        assert!(!has_token(&h, addr, "tok2"));
        assert!(!has_token(&HeaderMap::new(), addr, "tok"));
    }

    #[test]
    fn tokens_are_long_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
        assert!(!same(&a, &a[..63]));
    }

    #[test]
    fn a_form_from_another_origin_is_refused() {
        let ours = headers(&[(HOST, "127.0.0.1:4321"), (ORIGIN, "http://127.0.0.1:4321")]);
        assert!(same_origin(&ours));
        let theirs = headers(&[(HOST, "127.0.0.1:4321"), (ORIGIN, "http://evil.example")]);
        assert!(!same_origin(&theirs));
        assert!(same_origin(&headers(&[(HOST, "127.0.0.1:4321")])));
    }
}
