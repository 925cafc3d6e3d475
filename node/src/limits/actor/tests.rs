//! The limiter actor against a real store and vault, on a manual clock.

use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use async_trait::async_trait;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, RpcReplyPort};
use wafleet_cluster_config::quota::DAY_MS;
use wafleet_cluster_config::{Quota, QuotaTable};

use super::{Admission, LimiterArgs, LimiterMsg, RateLimiter};
use crate::clock::Clock;
use crate::context::{NodeConfig, NodeContext, Quotas};
use crate::events::{BusConfig, EventBus};
use crate::limits::policy::{Decision, Refusal};
use crate::limits::trust::{level_to_u8, promote_if_earned};
use crate::link::{LinkContext, LinkError, LinkFactory, LinkSession};
use crate::seal::{MasterKey, Sealer};
use crate::store::{
    DeviceRecord, DeviceStatus, Direction, MessageRecord, MessageStatus, SqliteStore, Store,
    TrustLevel,
};
use crate::vault::Vault;

const T0: i64 = 1_800_000_000_000;
const WEEK: i64 = 7 * DAY_MS;

#[derive(Debug)]
struct NoLinks;

#[async_trait]
impl LinkFactory for NoLinks {
    async fn open(&self, _: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        Err(LinkError::Connect("no links in this test".into()))
    }
}

/// The acceptance quota for NEWCOMER: 5 a minute, at least 2 s apart, and
/// a day of 20 so that 50 asks reach it.
fn table() -> QuotaTable {
    QuotaTable {
        newcomer: Quota {
            per_minute: 5,
            per_hour: 20,
            per_day: 20,
            min_gap_ms: 2_000,
            jitter_ms: 300,
            max_in_flight: 50,
        },
        ..QuotaTable::default()
    }
}

async fn context(dir: &std::path::Path, clock: Clock) -> Arc<NodeContext> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("w.db")).unwrap());
    let sealer = Arc::new(Sealer::new(MasterKey::new(1, [9u8; 32])));
    let keys = Arc::new(crate::seal::data_keys::DataKeys::new(
        store.clone(),
        sealer.clone(),
    ));
    let webhooks = Arc::new(crate::webhooks::Webhooks::new(
        store.clone(),
        keys.clone(),
        Default::default(),
        4,
        false,
    ));
    let media = Arc::new(crate::media::MediaLibrary::new(
        Arc::new(crate::media::NoMediaStore),
        keys.clone(),
        Default::default(),
    ));
    Arc::new(NodeContext {
        config: NodeConfig::default(),
        media,
        webhooks,
        vault: Vault::new(store.clone(), sealer),
        keys,
        store,
        bus: EventBus::in_memory(BusConfig::default()),
        links: Arc::new(NoLinks),
        connect_gate: Arc::new(tokio::sync::Semaphore::new(1)),
        running: Default::default(),
        quotas: Quotas::new(table()),
        clock,
        census: Default::default(),
        tenants: Default::default(),
    })
}

async fn create_device(ctx: &NodeContext, id: &str) {
    ctx.store
        .create_device(&DeviceRecord {
            id: id.into(),
            name: id.into(),
            tenant: "default".into(),
            status: DeviceStatus::Ready,
            status_reason: None,
            trust_level: TrustLevel::Newcomer,
            phone: Some("6281".into()),
            webhook: None,
            desired_running: true,
            created_at_ms: T0,
            updated_at_ms: T0,
            last_connected_at_ms: None,
        })
        .await
        .unwrap();
}

async fn spawn(ctx: &Arc<NodeContext>, id: &str) -> ActorRef<LimiterMsg> {
    let (actor, _) = Actor::spawn(
        None,
        RateLimiter,
        LimiterArgs {
            device_id: id.into(),
            fence: None,
            ctx: ctx.clone(),
            level: Arc::new(AtomicU8::new(level_to_u8(TrustLevel::Newcomer))),
        },
    )
    .await
    .unwrap();
    actor
}

async fn ask<T: Send + 'static>(
    actor: &ActorRef<LimiterMsg>,
    msg: impl FnOnce(RpcReplyPort<T>) -> LimiterMsg,
) -> T {
    match actor
        .call(msg, Some(Duration::from_secs(10)))
        .await
        .unwrap()
    {
        CallResult::Success(value) => value,
        CallResult::Timeout => panic!("limiter did not answer in time"),
        CallResult::SenderError => panic!("limiter dropped the call"),
    }
}

/// Stores an admitted send as the fleet does: created at the decision, its slot
/// as `not_before_ms`.
async fn store_send(ctx: &NodeContext, id: &str, n: usize, admission: &Admission) {
    ctx.store
        .insert_message(&MessageRecord {
            id: format!("m{n}"),
            device_id: id.into(),
            direction: Direction::Outbound,
            peer_phone: "6282".into(),
            text: "hi".into(),
            status: MessageStatus::Queued,
            error: None,
            idempotency_key: None,
            created_at_ms: admission.at_ms,
            not_before_ms: admission.slot(),
            sent_at_ms: None,
            delivered_at_ms: None,
            read_at_ms: None,
            failed_at_ms: None,
            send_at_ms: None,
            queued_at_ms: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn fifty_sends_at_once_are_paced_refused_past_the_day_and_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let ctx = context(dir.path(), clock.clone()).await;
    create_device(&ctx, "d").await;
    let limiter = spawn(&ctx, "d").await;

    let mut slots = Vec::new();
    let mut refused = Vec::new();
    for n in 0..50 {
        let admission = ask(&limiter, LimiterMsg::Admit).await.unwrap();
        match admission.decision {
            Decision::Refused {
                retry_after_ms,
                reason,
            } => refused.push((retry_after_ms, reason)),
            _ => {
                store_send(&ctx, "d", n, &admission).await;
                slots.push(admission.slot().unwrap());
            }
        }
    }
    assert_eq!(slots.len(), 20, "the day's quota");
    assert_eq!(slots[0], T0, "the first goes at once");
    assert_eq!(refused.len(), 30);
    for (retry_after_ms, reason) in &refused {
        assert_eq!(*reason, Refusal::DailyQuota);
        assert_eq!(
            *retry_after_ms, DAY_MS,
            "free again a day after the first send"
        );
    }
    for pair in slots.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            (2_000..=2_300).contains(&gap) || gap > 2_300 && pair[1] >= slots[0] + 60_000,
            "gap {gap} between {} and {}",
            pair[0] - T0,
            pair[1] - T0
        );
    }
    let first_minute = slots.iter().filter(|&&s| s < T0 + 60_000).count();
    assert_eq!(
        first_minute,
        5,
        "5 in the first minute: {:?}",
        slots.iter().map(|s| s - T0).collect::<Vec<_>>()
    );
    for window_start in &slots {
        let in_window = slots
            .iter()
            .filter(|&&s| s >= *window_start && s < window_start + 60_000)
            .count();
        assert!(in_window <= 5, "no minute holds more than 5");
    }

    // The spent quota is in the store: a new limiter (a restart, or another node)
    // sees the same, and refuses the same.
    let before = ask(&limiter, LimiterMsg::Limits).await.unwrap();
    // One went at once, 19 wait for their slots; the day has none left.
    assert_eq!((before.day.spent, before.queued), (1, 19));
    assert_eq!(before.day.remaining, 0);
    limiter.stop_and_wait(None, None).await.unwrap();
    let again = spawn(&ctx, "d").await;
    let after = ask(&again, LimiterMsg::Limits).await.unwrap();
    assert_eq!(
        (after.minute, after.hour, after.day),
        (before.minute, before.hour, before.day)
    );
    let admission = ask(&again, LimiterMsg::Admit).await.unwrap();
    assert!(matches!(
        admission.decision,
        Decision::Refused {
            reason: Refusal::DailyQuota,
            ..
        }
    ));

    // A day after the first send, its slot frees and one send is possible again.
    clock.advance(DAY_MS);
    let admission = ask(&again, LimiterMsg::Admit).await.unwrap();
    assert!(
        matches!(
            admission.decision,
            Decision::SendNow | Decision::Later { .. }
        ),
        "{admission:?}"
    );
}

#[tokio::test]
async fn a_changed_table_applies_to_the_next_send() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let ctx = context(dir.path(), clock.clone()).await;
    create_device(&ctx, "d").await;
    let limiter = spawn(&ctx, "d").await;
    let first = ask(&limiter, LimiterMsg::Admit).await.unwrap();
    store_send(&ctx, "d", 0, &first).await;
    let mut lower = table();
    lower.newcomer.per_day = 1;
    lower.newcomer.per_hour = 1;
    lower.newcomer.per_minute = 1;
    assert!(ctx.quotas.set(lower));
    let second = ask(&limiter, LimiterMsg::Admit).await.unwrap();
    assert!(
        matches!(
            second.decision,
            Decision::Refused {
                reason: Refusal::DailyQuota,
                ..
            }
        ),
        "{second:?}"
    );
    let view = ask(&limiter, LimiterMsg::Limits).await.unwrap();
    assert_eq!(view.quota.per_day, 1);
}

#[tokio::test]
async fn a_ban_demotes_pauses_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let ctx = context(dir.path(), clock.clone()).await;
    create_device(&ctx, "d").await;
    let (actor, _) = Actor::spawn(
        None,
        RateLimiter,
        LimiterArgs {
            device_id: "d".into(),
            fence: None,
            ctx: ctx.clone(),
            level: Arc::new(AtomicU8::new(level_to_u8(TrustLevel::Verified))),
        },
    )
    .await
    .unwrap();
    let mut events = ctx
        .bus
        .subscribe(crate::events::EventFilter::All, None)
        .await
        .unwrap();
    actor
        .cast(LimiterMsg::Banned {
            until_ms: T0 + 60_000,
        })
        .unwrap();
    // (Messages are handled in order: the ban before this ask.)
    let admission = ask(&actor, LimiterMsg::Admit).await.unwrap();
    assert_eq!(admission.level, TrustLevel::Newcomer, "demoted");
    assert_eq!(
        admission.decision,
        Decision::Refused {
            retry_after_ms: 60_000,
            reason: Refusal::Paused
        }
    );
    let record = ctx.store.get_device("d").await.unwrap().unwrap();
    assert_eq!(record.trust_level, TrustLevel::Newcomer, "stored");
    let event = events.next().await.unwrap();
    assert_eq!(event.data["reason"], "banned");
    assert_eq!(event.data["paused_until_ms"], T0 + 60_000);

    // The pause is in the vault: a new limiter keeps it.
    actor.stop_and_wait(None, None).await.unwrap();
    let again = spawn(&ctx, "d").await;
    let view = ask(&again, LimiterMsg::Limits).await.unwrap();
    assert_eq!(view.paused_until_ms, Some(T0 + 60_000));
    clock.advance(60_000);
    let admission = ask(&again, LimiterMsg::Admit).await.unwrap();
    assert_eq!(admission.decision, Decision::SendNow, "the pause is over");
}

#[tokio::test]
async fn a_week_linked_and_ready_makes_a_newcomer_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(T0);
    let ctx = context(dir.path(), clock.clone()).await;
    create_device(&ctx, "d").await;
    let limiter = spawn(&ctx, "d").await;
    limiter.cast(LimiterMsg::Linked).unwrap();
    let view = ask(&limiter, LimiterMsg::Limits).await.unwrap();
    assert_eq!(view.linked_at_ms, Some(T0));
    let vault = ctx.vault.device("d", None);
    clock.advance(WEEK - 1);
    let promoted = promote_if_earned(&ctx, "d", &vault).await.unwrap();
    assert_eq!(promoted, None, "a millisecond early");
    clock.advance(1);
    let promoted = promote_if_earned(&ctx, "d", &vault).await.unwrap();
    assert_eq!(promoted, Some(TrustLevel::Trusted));
    let again = promote_if_earned(&ctx, "d", &vault).await.unwrap();
    assert_eq!(again, None, "once");
    let record = ctx.store.get_device("d").await.unwrap().unwrap();
    assert_eq!(record.trust_level, TrustLevel::Trusted, "stored");
}
