//! Groups on real WhatsApp: a [`pb::GroupCommand`] through whatsapp-rust's `Groups`
//! feature (`w:g2` queries), answered as the link's [`GroupAnswer`], the device's own
//! number acting. Every change is followed by a fresh read of the group, so the answer
//! is the group as WhatsApp holds it afterwards.
//!
//! WhatsApp answers a change per participant: a change that some participants took is
//! the group after it (a client sees who is in); one that none took is refused with the
//! first participant's error. Participants that WhatsApp names only by LID, with no
//! phone number known, are left out of the answer (wafleet speaks phone numbers).
//!
//! Sending to a group and mentions go through the ordinary send (`mentions.rs` names
//! the group's JID and the mentioned numbers). None of this has run against WhatsApp
//! itself; the tests drive it through the [`GroupClient`] seam.

use async_trait::async_trait;
use wafleet_protocol::node_api::{self as pb, group_command::Op};
use whatsapp_rust::{
    Client, GroupCreateOptions, GroupError, GroupMetadata, GroupParticipantOptions, IqError, Jid,
};

use super::session::digits_of;
use crate::group::{ID_SUFFIX, is_group_id};
use crate::link::{GroupAnswer, LinkError};

/// A group as WhatsApp described it, in the seam's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Described {
    /// The group's user part (`120363…`, without `@g.us`).
    pub(super) user: String,
    pub(super) subject: String,
    /// The creator's phone digits, if WhatsApp named a phone number.
    pub(super) creator: Option<String>,
    /// Unix seconds.
    pub(super) created_at_s: Option<u64>,
    /// Each participant's phone digits (if known) and whether it is an admin.
    pub(super) participants: Vec<(Option<String>, bool)>,
}

/// How WhatsApp refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// 404: no such group.
    NotFound,
    /// 403: not allowed (not an admin; or not in the group).
    Forbidden,
    /// Not connected, or no answer in time.
    Unavailable(String),
    /// Any other refusal.
    Other(String),
}

/// Which change to make to a group's participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Add,
    Remove,
    Promote,
    Demote,
}

/// What group operations need of the WhatsApp client. A seam, so that a test can
/// answer in WhatsApp's ways without a connection.
#[async_trait]
pub(super) trait GroupClient: Send + Sync {
    async fn metadata(&self, group: &Jid) -> Result<Described, Failure>;
    async fn participating(&self) -> Result<Vec<Described>, Failure>;
    async fn create(&self, subject: &str, members: Vec<Jid>) -> Result<Described, Failure>;
    /// Per participant: its phone digits (or JID) and WhatsApp's error code, if any.
    async fn change(
        &self,
        change: Change,
        group: &Jid,
        members: Vec<Jid>,
    ) -> Result<Vec<(String, Option<String>)>, Failure>;
}

#[async_trait]
impl GroupClient for Client {
    async fn metadata(&self, group: &Jid) -> Result<Described, Failure> {
        let meta = self.groups().get_metadata(group).await.map_err(failure)?;
        Ok(described(&meta))
    }

    async fn participating(&self) -> Result<Vec<Described>, Failure> {
        let all = self.groups().get_participating().await.map_err(failure)?;
        Ok(all.values().map(described).collect())
    }

    async fn create(&self, subject: &str, members: Vec<Jid>) -> Result<Described, Failure> {
        let options = GroupCreateOptions::new(subject).with_participants(
            members
                .into_iter()
                .map(GroupParticipantOptions::from_phone)
                .collect(),
        );
        let created = self.groups().create_group(options).await.map_err(failure)?;
        Ok(described(&created.metadata))
    }

    async fn change(
        &self,
        change: Change,
        group: &Jid,
        members: Vec<Jid>,
    ) -> Result<Vec<(String, Option<String>)>, Failure> {
        let groups = self.groups();
        let group = group.clone();
        let answer = match change {
            Change::Add => groups.add_participants(group, &members).await,
            Change::Remove => groups.remove_participants(group, &members).await,
            Change::Promote => groups.promote_participants(group, &members).await,
            Change::Demote => groups.demote_participants(group, &members).await,
        }
        .map_err(failure)?;
        Ok(answer
            .into_iter()
            .map(|r| {
                let who = r.phone_number.as_ref().unwrap_or(&r.jid);
                (who.user.to_string(), r.error)
            })
            .collect())
    }
}

fn described(meta: &GroupMetadata) -> Described {
    let pn = |jid: Option<&Jid>| jid.filter(|j| j.is_pn()).map(|j| j.user.to_string());
    Described {
        user: meta.id.user.to_string(),
        subject: meta.subject.clone(),
        creator: pn(meta.creator_pn.as_ref()).or_else(|| pn(meta.creator.as_ref())),
        created_at_s: meta.creation_time,
        participants: meta
            .participants
            .iter()
            .map(|p| {
                let phone = pn(p.phone_number.as_ref()).or_else(|| pn(Some(&p.jid)));
                (phone, p.is_admin())
            })
            .collect(),
    }
}

fn failure(error: GroupError) -> Failure {
    match error {
        GroupError::Iq(IqError::ServerError { code: 404, .. }) => Failure::NotFound,
        GroupError::Iq(IqError::ServerError { code: 403, .. }) => Failure::Forbidden,
        GroupError::Iq(error @ (IqError::Timeout | IqError::NotConnected)) => {
            Failure::Unavailable(error.to_string())
        }
        other => Failure::Other(other.to_string()),
    }
}

/// Runs `command`, the device's number acting.
pub(super) async fn run<C: GroupClient + ?Sized>(
    client: &C,
    command: pb::GroupCommand,
) -> Result<GroupAnswer, LinkError> {
    let Some(op) = command.op else {
        return Ok(refused(
            "invalid_request",
            "a group command names an operation",
        ));
    };
    let (group, change, phones) = match op {
        Op::List(_) => {
            return match client.participating().await {
                Ok(all) => Ok(GroupAnswer::Groups(all.into_iter().map(group_of).collect())),
                Err(failure) => answer_failure(failure, false),
            };
        }
        Op::Create(create) => {
            let members = match jids(&create.participants) {
                Ok(members) => members,
                Err(answer) => return Ok(answer),
            };
            return match client.create(&create.subject, members).await {
                Ok(created) => Ok(GroupAnswer::Group(group_of(created))),
                Err(failure) => answer_failure(failure, true),
            };
        }
        Op::Info(group) => (group.group_id, None, Vec::new()),
        Op::AddParticipants(c) => (c.group_id, Some(Change::Add), c.phones),
        Op::RemoveParticipants(c) => (c.group_id, Some(Change::Remove), c.phones),
        Op::Promote(c) => (c.group_id, Some(Change::Promote), c.phones),
        Op::Demote(c) => (c.group_id, Some(Change::Demote), c.phones),
    };
    let Some(jid) = group_jid(&group) else {
        return Ok(refused(
            "not_found",
            &format!("{group:?} is not a group id"),
        ));
    };
    if let Some(change) = change {
        let members = match jids(&phones) {
            Ok(members) => members,
            Err(answer) => return Ok(answer),
        };
        let outcomes = match client.change(change, &jid, members).await {
            Ok(outcomes) => outcomes,
            Err(failure) => return answer_failure(failure, true),
        };
        if let Some(answer) = none_taken(change, &outcomes) {
            return Ok(answer);
        }
    }
    match client.metadata(&jid).await {
        Ok(group) => Ok(GroupAnswer::Group(group_of(group))),
        // A group this number is not in is one it may not read.
        Err(Failure::Forbidden) => answer_failure(Failure::NotFound, false),
        Err(failure) => answer_failure(failure, false),
    }
}

/// The refusal when WhatsApp took the change for none of the participants.
fn none_taken(change: Change, outcomes: &[(String, Option<String>)]) -> Option<GroupAnswer> {
    let (who, error) = outcomes.iter().find(|(_, error)| error.is_some())?;
    if outcomes.iter().any(|(_, error)| error.is_none()) {
        return None;
    }
    let error = error.as_deref().unwrap_or_default();
    let code = match (change, error) {
        (Change::Add, "404") => "not_on_whatsapp",
        (Change::Remove | Change::Promote | Change::Demote, "404") => "not_participant",
        (_, "403") => "not_admin",
        _ => "refused",
    };
    Some(refused(
        code,
        &format!("WhatsApp refused the change for {who}: error {error}"),
    ))
}

/// The phone-number JIDs of `phones`; a refusal for the first that is not a number.
fn jids(phones: &[String]) -> Result<Vec<Jid>, GroupAnswer> {
    phones
        .iter()
        .map(|phone| {
            digits_of(phone)
                .map(Jid::pn)
                .map_err(|why| refused("invalid_phone", &why))
        })
        .collect()
}

/// The JID of a group id (`120363…@g.us`).
fn group_jid(id: &str) -> Option<Jid> {
    is_group_id(id).then(|| Jid::group(id.trim_end_matches(ID_SUFFIX).to_owned()))
}

fn group_of(group: Described) -> pb::Group {
    pb::Group {
        id: format!("{}{ID_SUFFIX}", group.user),
        subject: group.subject,
        participants: group
            .participants
            .into_iter()
            .filter_map(|(phone, admin)| {
                Some(pb::GroupParticipant {
                    phone: phone?,
                    admin,
                })
            })
            .collect(),
        creator: group.creator.unwrap_or_default(),
        created_at_ms: group
            .created_at_s
            .and_then(|s| i64::try_from(s).ok())
            .map_or(0, |s| s.saturating_mul(1000)),
    }
}

/// A refusal as an answer, or a link error for a network that did not answer.
/// `changing`: a 403 means "not an admin" (a change) rather than "not in it" (a read).
fn answer_failure(failure: Failure, changing: bool) -> Result<GroupAnswer, LinkError> {
    match failure {
        Failure::NotFound => Ok(refused(
            "not_found",
            "WhatsApp knows no such group for this number",
        )),
        Failure::Forbidden if changing => Ok(refused(
            "not_admin",
            "WhatsApp refused: this number is not an admin of the group",
        )),
        Failure::Forbidden => Ok(refused("not_found", "this number is not in the group")),
        Failure::Unavailable(why) => Err(LinkError::WrongState(why)),
        Failure::Other(why) => Err(LinkError::Refused(why)),
    }
}

fn refused(code: &str, message: &str) -> GroupAnswer {
    GroupAnswer::Refused {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const GROUP: &str = "120363041234567890@g.us";

    /// WhatsApp as a test plays it: one group, and the changes asked.
    struct Fake {
        group: Mutex<Described>,
        /// What a metadata read answers instead of the group.
        read_fails: Option<Failure>,
        /// The per-participant error of every change, if any.
        change_error: Option<String>,
        asked: Mutex<Vec<(Change, Vec<String>)>>,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                group: Mutex::new(Described {
                    user: "120363041234567890".into(),
                    subject: "Tim".into(),
                    creator: Some("6281111111111".into()),
                    created_at_s: Some(1_700_000_000),
                    participants: vec![
                        (Some("6281111111111".into()), true),
                        (Some("6282222222222".into()), false),
                        (None, false),
                    ],
                }),
                read_fails: None,
                change_error: None,
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    #[async_trait]
    impl GroupClient for Fake {
        async fn metadata(&self, group: &Jid) -> Result<Described, Failure> {
            assert_eq!(group.to_string(), GROUP);
            match &self.read_fails {
                Some(failure) => Err(failure.clone()),
                None => Ok(self.group.lock().unwrap().clone()),
            }
        }

        async fn participating(&self) -> Result<Vec<Described>, Failure> {
            Ok(vec![self.group.lock().unwrap().clone()])
        }

        async fn create(&self, subject: &str, members: Vec<Jid>) -> Result<Described, Failure> {
            let mut group = self.group.lock().unwrap().clone();
            group.subject = subject.to_owned();
            group.participants = members
                .iter()
                .map(|m| (Some(m.user.to_string()), false))
                .collect();
            Ok(group)
        }

        async fn change(
            &self,
            change: Change,
            _group: &Jid,
            members: Vec<Jid>,
        ) -> Result<Vec<(String, Option<String>)>, Failure> {
            let users: Vec<String> = members.iter().map(|m| m.user.to_string()).collect();
            self.asked.lock().unwrap().push((change, users.clone()));
            Ok(users
                .into_iter()
                .map(|u| (u, self.change_error.clone()))
                .collect())
        }
    }

    fn command(op: Op) -> pb::GroupCommand {
        pb::GroupCommand { op: Some(op) }
    }

    fn change(phones: &[&str]) -> pb::GroupChange {
        pb::GroupChange {
            group_id: GROUP.into(),
            phones: phones.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn info_answers_phone_numbers_with_admin_flags_and_drops_unknown_lids() {
        let fake = Fake::new();
        let info = command(Op::Info(pb::GroupRef {
            group_id: GROUP.into(),
        }));
        match run(&fake, info).await.unwrap() {
            GroupAnswer::Group(group) => {
                assert_eq!(group.id, GROUP);
                assert_eq!(group.created_at_ms, 1_700_000_000_000);
                let members: Vec<_> = group
                    .participants
                    .iter()
                    .map(|p| (p.phone.as_str(), p.admin))
                    .collect();
                assert_eq!(members, [("6281111111111", true), ("6282222222222", false)]);
            }
            other => panic!("expected a group, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_change_asks_for_phone_jids_then_reads_the_group_again() {
        let fake = Fake::new();
        let answer = run(&fake, command(Op::Promote(change(&["+6282222222222"])))).await;
        assert!(matches!(answer, Ok(GroupAnswer::Group(_))), "{answer:?}");
        assert_eq!(
            *fake.asked.lock().unwrap(),
            [(Change::Promote, vec!["6282222222222".to_owned()])]
        );
    }

    #[tokio::test]
    async fn refusals_keep_their_meaning() {
        let mut fake = Fake::new();
        fake.change_error = Some("404".into());
        let add = run(
            &fake,
            command(Op::AddParticipants(change(&["6283333333333"]))),
        )
        .await;
        assert!(matches!(add, Ok(GroupAnswer::Refused { code, .. }) if code == "not_on_whatsapp"));
        fake.change_error = Some("403".into());
        let remove = run(
            &fake,
            command(Op::RemoveParticipants(change(&["6282222222222"]))),
        )
        .await;
        assert!(matches!(remove, Ok(GroupAnswer::Refused { code, .. }) if code == "not_admin"));

        fake.read_fails = Some(Failure::Forbidden);
        let info = command(Op::Info(pb::GroupRef {
            group_id: GROUP.into(),
        }));
        let read = run(&fake, info.clone()).await;
        assert!(matches!(read, Ok(GroupAnswer::Refused { code, .. }) if code == "not_found"));
        fake.read_fails = Some(Failure::Unavailable("not connected".into()));
        assert!(matches!(
            run(&fake, info).await,
            Err(LinkError::WrongState(_))
        ));

        let bad = run(&fake, command(Op::AddParticipants(change(&["12"])))).await;
        assert!(matches!(bad, Ok(GroupAnswer::Refused { code, .. }) if code == "invalid_phone"));
    }

    #[tokio::test]
    async fn create_and_list_answer_groups() {
        let fake = Fake::new();
        let create = command(Op::Create(pb::CreateGroup {
            subject: "Baru".into(),
            participants: vec!["6284444444444".into()],
        }));
        match run(&fake, create).await.unwrap() {
            GroupAnswer::Group(group) => {
                assert_eq!(group.subject, "Baru");
                assert_eq!(group.participants[0].phone, "6284444444444");
            }
            other => panic!("expected a group, got {other:?}"),
        }
        let list = run(&fake, command(Op::List(pb::Empty {}))).await.unwrap();
        assert!(matches!(list, GroupAnswer::Groups(groups) if groups.len() == 1));
    }
}
