//! WhatsApp groups of the simulated network: an id like `120363…@g.us`, a subject, the
//! number that created it and its participants, each an admin or not. Only admins
//! change a group; a number that is not in a group does not see it (`not_found`, as
//! WhatsApp answers a stranger).
//!
//! The rules live here, on plain data; `state` checks numbers against the phones it
//! knows (absent numbers), records changes in the journal and delivers group messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wafleet_protocol::sim::{Group as GroupFrame, GroupError, GroupParticipant};

use super::ids;

/// What every group id starts with (as WhatsApp's newer group ids do).
const ID_PREFIX: &str = "120363";
/// What every group id ends with.
pub(crate) const ID_SUFFIX: &str = "@g.us";
/// The longest subject, in characters.
pub(crate) const MAX_SUBJECT: usize = 100;

/// One group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) subject: String,
    /// The number that created it (an admin at first; it may be demoted or removed).
    pub(crate) creator: String,
    /// In the order they joined, the creator first.
    pub(crate) participants: Vec<Participant>,
    pub(crate) created_at_ms: i64,
}

/// A number in a group, as the network keeps it and the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub phone: String,
    /// An admin may change the group.
    pub admin: bool,
}

/// A refused group operation: a code of `GroupError` and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl Refused {
    pub(crate) fn not_found(id: &str) -> Refused {
        Refused {
            code: "not_found",
            message: format!("no group {id:?} that this number is in"),
        }
    }

    fn not_admin(phone: &str) -> Refused {
        Refused {
            code: "not_admin",
            message: format!("{phone} is not an admin of this group"),
        }
    }

    fn not_participant(phone: &str) -> Refused {
        Refused {
            code: "not_participant",
            message: format!("{phone} is not a participant of this group"),
        }
    }
}

impl From<Refused> for GroupError {
    fn from(refused: Refused) -> GroupError {
        GroupError {
            code: refused.code.to_owned(),
            message: refused.message,
        }
    }
}

/// Whether `text` looks like a group id: `120363`, digits, `@g.us`.
pub(crate) fn is_group_id(text: &str) -> bool {
    text.strip_suffix(ID_SUFFIX)
        .and_then(|digits| digits.strip_prefix(ID_PREFIX))
        .is_some_and(|rest| {
            (6..=24).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_digit())
        })
}

/// A new group id: `120363`, 12 random digits, `@g.us`.
pub(crate) fn new_id() -> String {
    let random = u64::from_le_bytes(ids::random_bytes::<8>()) % 1_000_000_000_000;
    format!("{ID_PREFIX}{random:012}{ID_SUFFIX}")
}

/// A subject: 1 to 100 characters, not only spaces.
pub(crate) fn check_subject(subject: &str) -> Result<(), Refused> {
    let chars = subject.chars().count();
    if subject.trim().is_empty() || chars > MAX_SUBJECT {
        return Err(Refused {
            code: "invalid_subject",
            message: format!("a group subject has 1 to {MAX_SUBJECT} characters"),
        });
    }
    Ok(())
}

impl Group {
    /// A new group of `creator` (an admin) and `others` (duplicates and the creator
    /// dropped), whose numbers the caller checked.
    pub(crate) fn new(
        id: String,
        subject: String,
        creator: &str,
        others: &[String],
        at_ms: i64,
    ) -> Group {
        let mut group = Group {
            id,
            subject,
            creator: creator.to_owned(),
            participants: vec![Participant {
                phone: creator.to_owned(),
                admin: true,
            }],
            created_at_ms: at_ms,
        };
        group.add(others);
        group
    }

    /// Whether `phone` is in the group.
    pub(crate) fn has(&self, phone: &str) -> bool {
        self.participants.iter().any(|p| p.phone == phone)
    }

    /// The group as `phone` may see it: `not_found` if it is not in it.
    pub(crate) fn seen_by(&self, phone: &str) -> Result<&Group, Refused> {
        if self.has(phone) {
            Ok(self)
        } else {
            Err(Refused::not_found(&self.id))
        }
    }

    /// `phone` may change the group: it is in it (else `not_found`) and an admin.
    pub(crate) fn changed_by(&mut self, phone: &str) -> Result<&mut Group, Refused> {
        match self.participants.iter().find(|p| p.phone == phone) {
            None => Err(Refused::not_found(&self.id)),
            Some(p) if !p.admin => Err(Refused::not_admin(phone)),
            Some(_) => Ok(self),
        }
    }

    /// Adds the numbers not in it yet, as plain participants.
    pub(crate) fn add(&mut self, phones: &[String]) {
        for phone in phones {
            if !self.has(phone) {
                self.participants.push(Participant {
                    phone: phone.clone(),
                    admin: false,
                });
            }
        }
    }

    /// Removes these participants; every one must be in the group.
    pub(crate) fn remove(&mut self, phones: &[String]) -> Result<(), Refused> {
        self.all_in(phones)?;
        self.participants.retain(|p| !phones.contains(&p.phone));
        Ok(())
    }

    /// Makes these participants admins (`true`) or not; every one must be in it.
    pub(crate) fn set_admin(&mut self, phones: &[String], admin: bool) -> Result<(), Refused> {
        self.all_in(phones)?;
        for p in self.participants.iter_mut() {
            if phones.contains(&p.phone) {
                p.admin = admin;
            }
        }
        Ok(())
    }

    fn all_in(&self, phones: &[String]) -> Result<(), Refused> {
        match phones.iter().find(|phone| !self.has(phone)) {
            Some(stranger) => Err(Refused::not_participant(stranger)),
            None => Ok(()),
        }
    }

    /// Everyone but `phone`.
    pub(crate) fn others(&self, phone: &str) -> impl Iterator<Item = &str> {
        self.participants
            .iter()
            .map(|p| p.phone.as_str())
            .filter(move |other| *other != phone)
    }

    /// The frame form (and the control API's, via [`GroupView`]).
    pub(crate) fn frame(&self) -> GroupFrame {
        GroupFrame {
            id: self.id.clone(),
            subject: self.subject.clone(),
            creator: self.creator.clone(),
            participants: self
                .participants
                .iter()
                .map(|p| GroupParticipant {
                    phone: p.phone.clone(),
                    admin: p.admin,
                })
                .collect(),
            created_at_ms: self.created_at_ms,
        }
    }

    /// How `GET /sim/groups/{id}` shows it.
    pub(crate) fn view(&self) -> GroupView {
        GroupView {
            id: self.id.clone(),
            subject: self.subject.clone(),
            creator: self.creator.clone(),
            participants: self.participants.clone(),
        }
    }
}

/// A group as `GET /sim/groups/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupView {
    pub id: String,
    pub subject: String,
    pub creator: String,
    /// `[{"phone", "admin"}]`, the creator first, then in the order they joined.
    pub participants: Vec<Participant>,
}

/// Every group, by id (ordered, so listings are stable).
pub(crate) type Groups = BTreeMap<String, Group>;

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Group {
        Group::new(
            new_id(),
            "team".into(),
            "62811111111",
            &[
                "62822222222".into(),
                "62811111111".into(),
                "62833333333".into(),
            ],
            1,
        )
    }

    #[test]
    fn ids_look_like_whatsapp_group_ids() {
        let id = new_id();
        assert!(is_group_id(&id), "{id}");
        assert_eq!(id.len(), 6 + 12 + 5);
        for bad in [
            "",
            "120363@g.us",
            "62811111111",
            "120363abc123456@g.us",
            "999999123456789@g.us",
        ] {
            assert!(!is_group_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_creator_is_the_first_admin_and_counted_once() {
        let g = group();
        let phones: Vec<_> = g
            .participants
            .iter()
            .map(|p| (p.phone.as_str(), p.admin))
            .collect();
        assert_eq!(
            phones,
            [
                ("62811111111", true),
                ("62822222222", false),
                ("62833333333", false)
            ]
        );
        assert_eq!(
            g.others("62822222222").collect::<Vec<_>>(),
            ["62811111111", "62833333333"]
        );
    }

    #[test]
    fn only_admins_change_and_strangers_see_nothing() {
        let mut g = group();
        assert_eq!(g.changed_by("62822222222").unwrap_err().code, "not_admin");
        assert_eq!(g.changed_by("62899999999").unwrap_err().code, "not_found");
        assert_eq!(g.seen_by("62899999999").unwrap_err().code, "not_found");
        g.set_admin(&["62822222222".into()], true).unwrap();
        assert!(g.changed_by("62822222222").is_ok());
        assert_eq!(
            g.remove(&["62899999999".into()]).unwrap_err().code,
            "not_participant"
        );
        g.remove(&["62833333333".into()]).unwrap();
        assert!(!g.has("62833333333"));
    }

    #[test]
    fn subjects_have_1_to_100_characters() {
        assert!(check_subject("a").is_ok());
        assert!(check_subject(&"é".repeat(100)).is_ok());
        assert!(check_subject(&"é".repeat(101)).is_err());
        assert!(check_subject("   ").is_err());
    }
}
