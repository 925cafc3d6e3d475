//! Where wafleet may send HTTP an operator asked for (a webhook's URL, a media URL): the URL parsed, its host resolved once, and every address it resolved to
//! checked, so that a request can then connect to exactly the checked addresses (a
//! name that resolves elsewhere on a second lookup cannot slip past the check).
//!
//! Refused unless private targets are allowed (`webhooks.allow_private_targets`): any
//! address that is not globally routable — loopback, private (RFC 1918, IPv6 unique
//! local), shared (100.64/10, where some clouds keep their metadata service),
//! link-local (169.254/16 with the usual metadata address, fe80::/10), unspecified,
//! multicast, broadcast, reserved, documentation and benchmarking ranges — and IPv6
//! addresses that embed such an IPv4 address (mapped, compatible, NAT64, 6to4). A name
//! is refused if any one of its addresses is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// How long resolving a target's name may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A URL that passed the check, with the addresses to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedTarget {
    pub url: Url,
    /// The host as written in the URL (a name, or an address literal).
    pub host: String,
    /// Every address the host resolved to, each allowed; never empty.
    pub addrs: Vec<SocketAddr>,
}

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("not a valid URL: {0}")]
    Invalid(String),
    #[error("only http and https URLs are allowed, not {0}")]
    Scheme(String),
    #[error("{host} resolves to {addr}, which is not a public address")]
    NotAllowed { host: String, addr: IpAddr },
    #[error("cannot resolve {host}: {reason}")]
    Unresolvable { host: String, reason: String },
}

impl TargetError {
    /// Whether the URL itself is unacceptable (as opposed to its name not resolving
    /// now, which may pass later).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, TargetError::Unresolvable { .. })
    }
}

/// Parses `url`, resolves its host once and checks every address (see the module
/// docs). With `allow_private`, any address passes.
pub async fn check_target(url: &str, allow_private: bool) -> Result<CheckedTarget, TargetError> {
    let url = check_url(url, allow_private)?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| TargetError::Invalid("no port".into()))?;
    let (host, ips) = match url.host() {
        None => return Err(TargetError::Invalid("no host".into())),
        Some(Host::Ipv4(ip)) => (ip.to_string(), vec![IpAddr::V4(ip)]),
        Some(Host::Ipv6(ip)) => (ip.to_string(), vec![IpAddr::V6(ip)]),
        Some(Host::Domain(name)) => (
            name.to_owned(),
            resolve_allowed(name, port, allow_private).await?,
        ),
    };
    let addrs = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    Ok(CheckedTarget { url, host, addrs })
}

/// What can be checked of `url` without resolving a name: it parses, is http or https,
/// has a host, and an address literal as host is allowed.
pub fn check_url(url: &str, allow_private: bool) -> Result<Url, TargetError> {
    let url = Url::parse(url).map_err(|error| TargetError::Invalid(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme(url.scheme().to_owned()));
    }
    let literal = match url.host() {
        None => return Err(TargetError::Invalid("no host".into())),
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(Host::Domain(_)) => None,
    };
    if let Some(addr) = literal.filter(|ip| !allow_private && !is_public(*ip)) {
        return Err(TargetError::NotAllowed {
            host: addr.to_string(),
            addr,
        });
    }
    Ok(url)
}

/// Resolves `name` once and checks every address it resolved to (any passes with
/// `allow_private`): the addresses to connect to.
pub async fn resolve_allowed(
    name: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<IpAddr>, TargetError> {
    let ips = resolve(name, port).await?;
    if !allow_private && let Some(addr) = ips.iter().find(|ip| !is_public(**ip)) {
        return Err(TargetError::NotAllowed {
            host: name.to_owned(),
            addr: *addr,
        });
    }
    Ok(ips)
}

async fn resolve(name: &str, port: u16) -> Result<Vec<IpAddr>, TargetError> {
    let unresolvable = |reason: String| TargetError::Unresolvable {
        host: name.to_owned(),
        reason,
    };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| unresolvable("timed out".into()))?
        .map_err(|error| unresolvable(error.to_string()))?;
    let mut ips: Vec<IpAddr> = found.map(|addr| addr.ip()).collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return Err(unresolvable("no address".into()));
    }
    Ok(ips)
}

/// Resolves names for a reqwest client, allowing only addresses the SSRF rule allows:
/// the client then connects to exactly the addresses checked.
#[derive(Debug)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let ips = resolve_allowed(name.as_str(), 0, allow_private).await?;
            let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network", unspecified
        || a == 10 // private
        || (a == 100 && (64..128).contains(&b)) // shared (carrier-grade NAT)
        || a == 127 // loopback
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // documentation
        || (a == 192 && b == 168) // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // documentation
        || (a == 203 && b == 0 && c == 113) // documentation
        || a >= 224; // multicast, reserved, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let refused = ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00 // unique local (fd00:ec2::254 among them)
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0]); // discard-only
    !refused
}

/// The IPv4 address an IPv6 address stands for, where it embeds one: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`, deprecated), NAT64 (`64:ff9b::/96`) and
/// 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(tail(hi, lo)),
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        [0x2002, hi, lo, ..] => Some(tail(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_globally_routable_addresses_are_public() {
        for refused in [
            "0.0.0.0",
            "10.0.0.1",
            "100.64.0.1",
            "100.100.100.200",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.192",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "::5",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(!is_public(ip), "{refused} must not be public");
        }
        for allowed in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "223.255.255.254",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = allowed.parse().unwrap();
            assert!(is_public(ip), "{allowed} must be public");
        }
    }

    #[tokio::test]
    async fn private_literals_and_names_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://10.0.0.1/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/hook",
            "http://[::ffff:7f00:1]/hook",
            "http://localhost:9/hook",
        ] {
            match check_target(url, false).await {
                Err(error @ TargetError::NotAllowed { .. }) => assert!(error.is_refusal()),
                other => panic!("{url}: expected NotAllowed, got {other:?}"),
            }
            let allowed = check_target(url, true)
                .await
                .unwrap_or_else(|error| panic!("{url} with private targets allowed: {error}"));
            assert!(!allowed.addrs.is_empty());
            assert!(allowed.addrs.iter().all(|a| !is_public(a.ip())));
        }
    }

    #[tokio::test]
    async fn a_checked_target_carries_the_addresses_to_connect_to() {
        let target = check_target("https://8.8.8.8/hook?x=1", false)
            .await
            .unwrap();
        assert_eq!(target.host, "8.8.8.8");
        assert_eq!(target.addrs, vec!["8.8.8.8:443".parse().unwrap()]);
        assert_eq!(target.url.as_str(), "https://8.8.8.8/hook?x=1");
        let target = check_target("http://[2606:4700:4700::1111]:8080/", false)
            .await
            .unwrap();
        assert_eq!(
            target.addrs,
            vec!["[2606:4700:4700::1111]:8080".parse().unwrap()]
        );
    }

    #[tokio::test]
    async fn urls_that_are_not_http_are_refused() {
        assert!(matches!(
            check_target("ftp://example.com/x", false).await,
            Err(TargetError::Scheme(s)) if s == "ftp"
        ));
        assert!(matches!(
            check_target("file:///etc/passwd", true).await,
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            check_target("not a url", false).await,
            Err(TargetError::Invalid(_))
        ));
    }
}
