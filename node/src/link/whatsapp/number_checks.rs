//! Which numbers have a WhatsApp account: WhatsApp's usync "exists" query, through
//! whatsapp-rust's `Contacts::is_on_whatsapp`, answered as wafleet's [`NumberCheck`]s,
//! one per number asked, in the order asked.
//!
//! WhatsApp answers per account, not per question: an answer may name the account by
//! its LID with the phone-number JID beside it, and a number it does not know may be
//! missing from the answer. Answers are therefore matched to the numbers asked by
//! their phone-number JID's digits; a number without an answer is not on WhatsApp.

use std::time::Duration;

use async_trait::async_trait;
use whatsapp_rust::{Client, Jid};

use super::session::digits_of;
use crate::link::{LinkError, NumberCheck};

/// How long WhatsApp may take to answer a number check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(8);

/// One account in WhatsApp's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    /// The digits of its phone-number JID, if the answer names one.
    pub(super) digits: Option<String>,
    /// Its phone-number JID, as text (`6281234567890@s.whatsapp.net`).
    pub(super) jid: Option<String>,
    /// WhatsApp says the number is registered.
    pub(super) registered: bool,
}

impl Found {
    /// An answer naming `primary` (a phone-number or LID JID), with `pn` the
    /// phone-number JID given beside a LID.
    pub(super) fn of(primary: &Jid, pn: Option<&Jid>, registered: bool) -> Found {
        let pn = if primary.is_pn() {
            Some(primary)
        } else {
            pn.filter(|jid| jid.is_pn())
        };
        Found {
            digits: pn.map(|jid| jid.user.to_string()),
            jid: pn.map(|jid| jid.to_non_ad_string()),
            registered,
        }
    }
}

/// What a number check needs of the WhatsApp client. A seam, so that a test can
/// answer in WhatsApp's ways without a connection.
#[async_trait]
pub(super) trait Lookup: Send + Sync {
    /// WhatsApp's answer for these phone-number JIDs.
    async fn lookup(&self, jids: Vec<Jid>) -> Result<Vec<Found>, String>;

    /// Whether the connection to WhatsApp is up now.
    fn connected(&self) -> bool;
}

#[async_trait]
impl Lookup for Client {
    async fn lookup(&self, jids: Vec<Jid>) -> Result<Vec<Found>, String> {
        let answer = self
            .contacts()
            .is_on_whatsapp(&jids)
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer
            .iter()
            .map(|r| Found::of(&r.jid, r.pn_jid.as_ref(), r.is_registered))
            .collect())
    }

    fn connected(&self) -> bool {
        self.is_connected()
    }
}

/// Which of `phones` are on WhatsApp, in the order asked. A number that is not one
/// (see [`digits_of`]) is not asked and not on WhatsApp.
pub(super) async fn check_numbers(
    client: &dyn Lookup,
    phones: Vec<String>,
) -> Result<Vec<NumberCheck>, LinkError> {
    if !client.connected() {
        return Err(LinkError::WrongState("not connected to WhatsApp".into()));
    }
    let digits: Vec<Option<String>> = phones.iter().map(|p| digits_of(p).ok()).collect();
    let mut asked: Vec<String> = digits.iter().flatten().cloned().collect();
    asked.sort();
    asked.dedup();
    let found = if asked.is_empty() {
        Vec::new()
    } else {
        let jids = asked.into_iter().map(Jid::pn).collect();
        tokio::time::timeout(CHECK_TIMEOUT, client.lookup(jids))
            .await
            .map_err(|_| LinkError::Timeout)?
            .map_err(LinkError::Refused)?
    };
    Ok(phones
        .into_iter()
        .zip(digits)
        .map(|(phone, digits)| {
            let account = digits.and_then(|digits| {
                found
                    .iter()
                    .find(|f| f.registered && f.digits.as_deref() == Some(digits.as_str()))
            });
            NumberCheck {
                phone,
                on_whatsapp: account.is_some(),
                jid: account.and_then(|f| f.jid.clone()),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Answers with what it was given, and remembers what it was asked.
    struct Answers {
        found: Vec<Found>,
        asked: Mutex<Vec<String>>,
        connected: bool,
    }

    #[async_trait]
    impl Lookup for Answers {
        async fn lookup(&self, jids: Vec<Jid>) -> Result<Vec<Found>, String> {
            *self.asked.lock().unwrap() = jids.iter().map(|j| j.to_string()).collect();
            Ok(self.found.clone())
        }

        fn connected(&self) -> bool {
            self.connected
        }
    }

    fn answers(found: Vec<Found>) -> Answers {
        Answers {
            found,
            asked: Mutex::new(Vec::new()),
            connected: true,
        }
    }

    #[test]
    fn an_answer_is_known_by_its_phone_number_jid_even_behind_a_lid() {
        let pn = Jid::pn("6281111111111");
        assert_eq!(
            Found::of(&pn, None, true),
            Found {
                digits: Some("6281111111111".into()),
                jid: Some("6281111111111@s.whatsapp.net".into()),
                registered: true,
            }
        );
        let lid = Jid::lid("100000001");
        let behind = Found::of(&lid, Some(&pn), true);
        assert_eq!(behind.digits.as_deref(), Some("6281111111111"));
        assert_eq!(behind.jid.as_deref(), Some("6281111111111@s.whatsapp.net"));
        let alone = Found::of(&lid, None, true);
        assert_eq!((alone.digits, alone.jid), (None, None));
    }

    #[tokio::test]
    async fn checks_come_in_the_order_asked_whatever_the_answer_order() {
        let client = answers(vec![
            Found::of(&Jid::pn("6283333333333"), None, false),
            Found::of(
                &Jid::lid("100000002"),
                Some(&Jid::pn("6282222222222")),
                true,
            ),
            Found::of(&Jid::pn("6281111111111"), None, true),
        ]);
        let asked = [
            "+62 811-1111-1111",
            "6282222222222",
            "6283333333333",
            "6284444444444",
            "nope",
        ];
        let checks = check_numbers(&client, asked.map(String::from).to_vec())
            .await
            .expect("checked");
        let shown: Vec<(&str, bool, Option<&str>)> = checks
            .iter()
            .map(|c| (c.phone.as_str(), c.on_whatsapp, c.jid.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "+62 811-1111-1111",
                    true,
                    Some("6281111111111@s.whatsapp.net")
                ),
                ("6282222222222", true, Some("6282222222222@s.whatsapp.net")),
                ("6283333333333", false, None),
                ("6284444444444", false, None),
                ("nope", false, None),
            ]
        );
        // Each valid number asked once, as a phone-number JID.
        assert_eq!(
            *client.asked.lock().unwrap(),
            [
                "6281111111111@s.whatsapp.net",
                "6282222222222@s.whatsapp.net",
                "6283333333333@s.whatsapp.net",
                "6284444444444@s.whatsapp.net",
            ]
        );
    }

    #[tokio::test]
    async fn a_link_that_is_not_connected_refuses() {
        let client = Answers {
            connected: false,
            ..answers(Vec::new())
        };
        let refused = check_numbers(&client, vec!["6281111111111".into()]).await;
        assert!(
            matches!(refused, Err(LinkError::WrongState(_))),
            "{refused:?}"
        );
    }
}
