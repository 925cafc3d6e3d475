//! Checks shared by the sections: each failure names the key it is about.

use std::net::SocketAddr;
use std::time::Duration;

/// A value that deserialized but is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// The dotted key at fault (`cluster.shards`).
    pub(crate) key: &'static str,
    pub(crate) message: String,
}

impl Invalid {
    pub(crate) fn new(key: &'static str, message: impl Into<String>) -> Invalid {
        Invalid {
            key,
            message: message.into(),
        }
    }
}

/// Durations are written in whole milliseconds, in keys that end in `_ms`.
pub(crate) fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let ms = <u64 as serde::Deserialize>::deserialize(d)?;
    Ok(Duration::from_millis(ms))
}

/// An `IP:port` to listen on, with a message that shows the expected form.
pub(crate) fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    parse_socket_addr(&text).map_err(serde::de::Error::custom)
}

/// Like [`socket_addr`], for an optional key.
pub(crate) fn socket_addr_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = <Option<String> as serde::Deserialize>::deserialize(d)?;
    text.map(|t| parse_socket_addr(&t).map_err(serde::de::Error::custom))
        .transpose()
}

fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("expected IP:port such as 0.0.0.0:8080 or [::]:8080 (port 0 picks a free one), found `{text}`")
    })
}

/// `value` (a duration in a `*_ms` key) lies within `min..=max` milliseconds.
pub(crate) fn millis_in(
    key: &'static str,
    value: Duration,
    min: u64,
    max: u64,
) -> Result<(), Invalid> {
    let ms = value.as_millis();
    if ms < u128::from(min) || ms > u128::from(max) {
        return Err(Invalid::new(
            key,
            format!("{ms} ms is out of range: expected {min} to {max} ms"),
        ));
    }
    Ok(())
}

/// `value` lies within `min..=max`.
pub(crate) fn within<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    min: T,
    max: T,
) -> Result<(), Invalid> {
    if value < min || value > max {
        return Err(Invalid::new(
            key,
            format!("{value} is out of range: expected {min} to {max}"),
        ));
    }
    Ok(())
}

/// Every item of `list` (the value of `key`) is a `host:port` a process can dial: a
/// name or IP address (IPv6 in brackets) and a port from 1 to 65535.
pub(crate) fn host_ports(key: &'static str, list: &[String]) -> Result<(), Invalid> {
    for item in list {
        if !is_host_port(item) {
            return Err(Invalid::new(
                key,
                format!("`{item}` is not host:port (such as node-1.wafleet:4697 or 10.0.0.5:4697)"),
            ));
        }
    }
    Ok(())
}

fn is_host_port(value: &str) -> bool {
    let Some((host, port)) = value.rsplit_once(':') else {
        return false;
    };
    let port_ok = matches!(port.parse::<u16>(), Ok(p) if p > 0);
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        is_host(host)
    };
    port_ok && host_ok
}

/// A DNS name or IPv4 address: letters, digits, `-` and `.`, not empty.
pub(crate) fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// A DNS name or an IP address (IPv6 without brackets).
pub(crate) fn is_host_or_ip(host: &str) -> bool {
    is_host(host) || host.parse::<std::net::IpAddr>().is_ok()
}

/// A node or gateway name: 1 to 64 of `A-Z a-z 0-9 . _ -`. Names appear in the cluster
/// protocol, in leases, in logs and in the API (a device's `node`), so they stay plain.
pub(crate) fn name(key: &'static str, value: &str) -> Result<(), Invalid> {
    let ok = (1..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        return Err(Invalid::new(
            key,
            format!("`{value}` is not a valid name: use 1 to 64 of A-Z a-z 0-9 . _ -"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_accepts_names_and_addresses_and_refuses_the_rest() {
        for ok in [
            "node-1:4697",
            "10.0.0.5:1",
            "[::1]:4697",
            "wafleet-node-0.wafleet.svc:4697",
        ] {
            assert!(is_host_port(ok), "{ok}");
        }
        for bad in [
            "node-1",
            ":4697",
            "node-1:0",
            "node-1:70000",
            "a b:1",
            "[::1:4697",
            "::1:4697",
            "",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }

    #[test]
    fn names_are_plain() {
        assert!(name("k", "node-1").is_ok());
        assert!(name("k", "Node_1.a").is_ok());
        for bad in ["", "node 1", "node/1", "nöde", &"n".repeat(65)] {
            assert!(name("k", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_say_what_they_expected() {
        let err = millis_in("lease.ttl_ms", Duration::from_millis(5), 100, 1000).unwrap_err();
        assert_eq!(err.key, "lease.ttl_ms");
        assert!(err.message.contains("100 to 1000 ms"), "{}", err.message);
        assert!(within("cluster.shards", 0, 1, 65_536).is_err());
        assert!(within("cluster.shards", 1024, 1, 65_536).is_ok());
    }
}
