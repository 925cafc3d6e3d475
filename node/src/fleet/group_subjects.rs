//! [`GroupSubjects`]: the subjects of its devices' groups as a node learned them, and
//! [`Fleet::group_subjects`], what a chat list shows as a group chat's name.
//!
//! # Why a memory, and what it costs
//! The message log keeps a group chat under the group's id only, and asking the network
//! for each group of a page would be a round trip per group chat on every page. So the
//! node remembers, per device it runs, the subject of every group that passed through a
//! group reply of that device (create, info, a participant or admin change, a list),
//! and answers a page's groups from memory. A group it does not know (created by
//! another member, or learned before this node ran the device) makes it ask the network
//! for the device's group list — one request, which names every group the number is
//! in — at most once per [`LIST_INTERVAL`] per device, and only while the device is
//! READY. The page waits for that list [`LIST_WAIT`] at most (a slow network does not
//! hold a chat list up); one that comes later is learned all the same, for the next
//! page. Until then, and for a group the list does not name (the number left it), the
//! subject is unknown and the chat's name `null`.
//!
//! Inbound group messages teach nothing: neither link gives a subject with them
//! (WhatsApp's message info names the group by id only). The memory is this node's
//! only: after a restart, or once the device runs on another node, one list learns it
//! again. A device's entry is forgotten when it is deleted or logged out. A rename made
//! elsewhere shows once a group reply names the group again (an info, a change, a list
//! asked for another unknown group).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::debug;
use wafleet_protocol::node_api::{self as pb, group_command::Op};

use super::{Fleet, call};
use crate::api::FleetError;
use crate::device::DeviceMsg;
use crate::group::is_group_id;
use crate::link::GroupAnswer;

/// The least time between two group lists a device's node asks the network for to
/// name groups it does not know.
pub(crate) const LIST_INTERVAL: Duration = Duration::from_secs(60);
/// How long a chat list waits for that list; one that comes later names the groups of
/// the next page.
const LIST_WAIT: Duration = Duration::from_secs(2);

/// What a node knows of its devices' groups. Shared by the fleet's clones.
#[derive(Debug, Default)]
pub(crate) struct GroupSubjects {
    devices: Mutex<HashMap<String, Known>>,
}

/// What a node knows of one device's groups.
#[derive(Debug, Default)]
struct Known {
    /// Subject by group id.
    subjects: HashMap<String, String>,
    /// When a list was last asked for (to name unknown groups) or answered.
    listed_at: Option<Instant>,
}

/// Whether a list last asked for at `listed_at` may be asked for again at `now`.
fn list_due(listed_at: Option<Instant>, now: Instant) -> bool {
    listed_at.is_none_or(|at| now.saturating_duration_since(at) >= LIST_INTERVAL)
}

impl GroupSubjects {
    fn devices(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.devices.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers the subjects a group reply of `device` named; a list (`listed`) also
    /// counts as the device's last list, at `now`.
    pub(crate) fn learn(&self, device: &str, groups: &[pb::Group], listed: bool, now: Instant) {
        let mut devices = self.devices();
        let known = devices.entry(device.to_owned()).or_default();
        for group in groups {
            known
                .subjects
                .insert(group.id.clone(), group.subject.clone());
        }
        if listed {
            known.listed_at = Some(now);
        }
    }

    /// The known subjects of `ids` for `device`, and whether to ask the network for the
    /// device's list now: some are unknown, the device `can_ask` (it is READY) and no
    /// list was asked for within [`LIST_INTERVAL`]. A `true` counts as the list asked
    /// for at `now`, so that pages read meanwhile do not ask again.
    pub(crate) fn lookup(
        &self,
        device: &str,
        ids: &[String],
        can_ask: bool,
        now: Instant,
    ) -> (HashMap<String, String>, bool) {
        let mut devices = self.devices();
        let known = devices.entry(device.to_owned()).or_default();
        let found: HashMap<String, String> = ids
            .iter()
            .filter_map(|id| Some((id.clone(), known.subjects.get(id)?.clone())))
            .collect();
        let ask = can_ask && found.len() < ids.len() && list_due(known.listed_at, now);
        if ask {
            known.listed_at = Some(now);
        }
        (found, ask)
    }

    /// Forgets what `device`'s groups are called (deleted, logged out).
    pub(crate) fn forget(&self, device: &str) {
        self.devices().remove(device);
    }
}

impl Fleet {
    /// The subjects of `group_ids` (ids that are not group ids are skipped) as this
    /// node knows them, asking the network for the device's group list first when one
    /// is unknown (see the module docs); a group still unknown is left out. Fails only
    /// for a device that does not exist.
    pub async fn group_subjects(
        &self,
        id: &str,
        group_ids: Vec<String>,
    ) -> Result<Vec<pb::Group>, FleetError> {
        let device = self.catalog.device(id).await?;
        let ids: Vec<String> = group_ids.into_iter().filter(|g| is_group_id(g)).collect();
        let ready = self.ready_actor(&device, "naming groups").ok();
        let (mut found, ask) = self
            .subjects
            .lookup(id, &ids, ready.is_some(), Instant::now());
        if let (true, Some(actor)) = (ask, ready) {
            // Learned whenever it comes; this page waits for it `LIST_WAIT` at most.
            let (fleet, device_id) = (self.clone(), id.to_owned());
            let listing = tokio::spawn(async move {
                let list = pb::GroupCommand {
                    op: Some(Op::List(pb::Empty {})),
                };
                match call(&actor, move |reply| DeviceMsg::Group(list, reply)).await {
                    Ok(Ok(answer @ GroupAnswer::Groups(_))) => {
                        fleet.learn_subjects(&device_id, &answer);
                    }
                    other => {
                        debug!(%device_id, answer = ?other, "the group list did not come; the unknown groups stay unnamed")
                    }
                }
            });
            if tokio::time::timeout(LIST_WAIT, listing).await.is_ok() {
                found = self.subjects.lookup(id, &ids, false, Instant::now()).0;
            }
        }
        Ok(ids
            .into_iter()
            .filter_map(|group| {
                let subject = found.remove(&group)?;
                Some(pb::Group {
                    id: group,
                    subject,
                    ..pb::Group::default()
                })
            })
            .collect())
    }

    /// Remembers the subjects a group reply of device `id` named.
    pub(super) fn learn_subjects(&self, id: &str, answer: &GroupAnswer) {
        match answer {
            GroupAnswer::Group(group) => {
                self.subjects
                    .learn(id, std::slice::from_ref(group), false, Instant::now())
            }
            GroupAnswer::Groups(groups) => self.subjects.learn(id, groups, true, Instant::now()),
            GroupAnswer::Refused { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, subject: &str) -> pb::Group {
        pb::Group {
            id: id.into(),
            subject: subject.into(),
            ..pb::Group::default()
        }
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn known_groups_are_named_without_asking() {
        let subjects = GroupSubjects::default();
        let now = Instant::now();
        subjects.learn("d1", &[group("g1", "Gudang")], false, now);
        let (found, ask) = subjects.lookup("d1", &ids(&["g1"]), true, now);
        assert_eq!(found.get("g1").map(String::as_str), Some("Gudang"));
        assert!(!ask);
        // Another device knows nothing of it.
        let (found, _) = subjects.lookup("d2", &ids(&["g1"]), false, now);
        assert!(found.is_empty());
    }

    #[test]
    fn an_unknown_group_asks_for_the_list_at_most_once_per_interval() {
        let subjects = GroupSubjects::default();
        let start = Instant::now();
        let unknown = ids(&["g1", "g2"]);
        // Not READY: never asks, and does not spend the interval.
        assert!(!subjects.lookup("d1", &unknown, false, start).1);
        assert!(subjects.lookup("d1", &unknown, true, start).1);
        // Meanwhile (the list under way, failed, or naming neither): not again.
        let later = start + LIST_INTERVAL - Duration::from_millis(1);
        assert!(!subjects.lookup("d1", &unknown, true, later).1);
        assert!(
            subjects
                .lookup("d1", &unknown, true, start + LIST_INTERVAL)
                .1
        );
        // A list that came counts too.
        let listed = start + 3 * LIST_INTERVAL;
        subjects.learn("d1", &[group("g1", "Gudang")], true, listed);
        assert!(
            !subjects
                .lookup("d1", &unknown, true, listed + LIST_INTERVAL / 2)
                .1
        );
    }

    #[test]
    fn a_forgotten_device_knows_nothing() {
        let subjects = GroupSubjects::default();
        let now = Instant::now();
        subjects.learn("d1", &[group("g1", "Gudang")], true, now);
        subjects.forget("d1");
        let (found, ask) = subjects.lookup("d1", &ids(&["g1"]), true, now);
        assert!(found.is_empty());
        assert!(ask);
    }
}
