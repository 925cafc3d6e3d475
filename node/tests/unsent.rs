//! A send the link could not confirm (it timed out, or the connection went while
//! sending) may have reached WhatsApp: the device keeps the message queued, not failed,
//! and hands it to the link again, which sends it under the same WhatsApp id.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wafleet_node::link::{
    LinkCommand, LinkContext, LinkError, LinkEvent, LinkEvents, LinkFactory, LinkSession,
    ReceiptStatus,
};
use wafleet_node::store::MessageStatus;
use wafleet_node::{NodeConfig, SendText};

mod common;

/// A paired link whose first hand-off of each message is not confirmed; later ones are.
#[derive(Debug, Default, Clone)]
struct UnconfirmedOnce {
    handed: Arc<Mutex<Vec<String>>>,
}

struct Session {
    events: LinkEvents,
    handed: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl LinkSession for Session {
    fn command(&mut self, command: LinkCommand) -> Result<(), LinkError> {
        if let LinkCommand::SendText { message_id, .. } = command {
            let first = {
                let mut handed = self.handed.lock().unwrap();
                handed.push(message_id.clone());
                handed.iter().filter(|id| **id == message_id).count() == 1
            };
            self.events.emit(if first {
                LinkEvent::Unsent {
                    message_id,
                    reason: "timed out sending to WhatsApp".into(),
                }
            } else {
                LinkEvent::Receipt {
                    message_id,
                    status: ReceiptStatus::Sent,
                    error: None,
                    at_ms: 0,
                }
            });
        }
        Ok(())
    }
}

#[async_trait]
impl LinkFactory for UnconfirmedOnce {
    async fn open(&self, ctx: LinkContext) -> Result<Box<dyn LinkSession>, LinkError> {
        ctx.events.emit(LinkEvent::Paired {
            phone: "6281000000001".into(),
        });
        Ok(Box::new(Session {
            events: ctx.events.clone(),
            handed: self.handed.clone(),
        }))
    }
}

#[tokio::test]
async fn an_unconfirmed_send_stays_queued_and_is_handed_again_never_failed() {
    let link = UnconfirmedOnce::default();
    let (_dir, fleet) =
        common::fleet_with_ready_device(NodeConfig::default(), Arc::new(link.clone()), None, "u")
            .await;
    let sent = fleet
        .send_text(
            "u",
            SendText {
                to_phone: "6281234567890".into(),
                text: "hello".into(),
                idempotency_key: None,
                media: None,
                mentions: Vec::new(),
                send_at_ms: None,
                reply_to: None,
            },
        )
        .await
        .unwrap();
    let id = sent.message.id.clone();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let message = fleet.catalog().message("u", &id).await.unwrap();
        assert_ne!(message.status, MessageStatus::Failed, "{message:?}");
        if message.status == MessageStatus::Sent {
            break;
        }
        assert!(Instant::now() < deadline, "never handed again: {message:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(*link.handed.lock().unwrap(), [id.clone(), id]);
    fleet.shutdown().await;
}
