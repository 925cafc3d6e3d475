//! The `test-chain` build: a wafleet that skips WhatsApp's certificate-chain check, so
//! that the real link can complete a handshake with a protocol test server, and the one
//! rule that keeps such a build away from WhatsApp itself.
//!
//! The feature (`wafleet-node/test-chain`, `wafleet/test-chain`) turns on whatsapp-rust's
//! `danger-skip-cert-chain-verify`: the client then accepts any server whose chain is
//! well formed, signed by anyone. A build with it must never talk to WhatsApp, where the
//! check is what proves the server is WhatsApp's. So [`check_dial`] refuses WhatsApp's
//! own hosts, and whoever builds [`Connectors`](super::Connectors) goes through it.

use tracing::warn;

use super::client::WhatsAppConfig;
use crate::link::LinkError;

/// Whether this binary skips WhatsApp's certificate-chain check (a `test-chain` build).
pub fn chain_verification_bypassed() -> bool {
    cfg!(feature = "test-chain")
}

/// Refuses a link that would dial WhatsApp from a build that skips its certificate
/// check, and warns loudly when such a build runs the link at all.
pub(crate) fn check_dial(config: &WhatsAppConfig) -> Result<(), LinkError> {
    if !chain_verification_bypassed() {
        return Ok(());
    }
    refuse_whatsapp(config)?;
    warn!(
        url = config.url(),
        "this wafleet was built with the test-chain feature: it skips WhatsApp's certificate check and must only ever dial a test server"
    );
    Ok(())
}

/// The rule of a bypass build: any URL but WhatsApp's (the default, or a host under
/// whatsapp.com or whatsapp.net). A relay in front of WhatsApp cannot be told apart.
fn refuse_whatsapp(config: &WhatsAppConfig) -> Result<(), LinkError> {
    if config.ws_url.is_none() || is_whatsapp_host(config.url()) {
        return Err(LinkError::Connect(format!(
            "this wafleet was built with the test-chain feature, which skips WhatsApp's certificate check; it only dials a test server given by --link whatsapp=URL (or [link] whatsapp_url), not {}",
            config.url()
        )));
    }
    Ok(())
}

fn is_whatsapp_host(url: &str) -> bool {
    let Some(host) = url::Url::parse(url).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
    }) else {
        return false;
    };
    ["whatsapp.com", "whatsapp.net"]
        .iter()
        .any(|domain| host == *domain || host.ends_with(&format!(".{domain}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::whatsapp::client::WHATSAPP_WS_URL;

    fn dialing(url: Option<&str>) -> WhatsAppConfig {
        WhatsAppConfig {
            ws_url: url.map(str::to_owned),
            version: None,
        }
    }

    #[test]
    fn a_bypass_build_never_dials_whatsapp() {
        for whatsapp in [
            None,
            Some(WHATSAPP_WS_URL),
            Some("wss://WEB.WhatsApp.com./ws/chat"),
            Some("wss://g.whatsapp.net/ws/chat"),
        ] {
            let err = refuse_whatsapp(&dialing(whatsapp)).unwrap_err().to_string();
            assert!(
                err.contains("built with the test-chain feature")
                    && err.contains("--link whatsapp=URL"),
                "{whatsapp:?}: {err}"
            );
        }
        for test_server in [
            "ws://127.0.0.1:9000/ws/chat",
            "wss://waserver.test/ws/chat",
            "ws://notwhatsapp.com/ws",
        ] {
            assert!(
                refuse_whatsapp(&dialing(Some(test_server))).is_ok(),
                "{test_server}"
            );
        }
    }

    #[test]
    fn only_a_bypass_build_applies_the_rule() {
        assert_eq!(
            check_dial(&dialing(None)).is_ok(),
            !chain_verification_bypassed()
        );
        assert!(check_dial(&dialing(Some("ws://127.0.0.1:9/ws/chat"))).is_ok());
    }
}
