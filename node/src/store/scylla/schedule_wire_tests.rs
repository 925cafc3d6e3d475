//! Messages over the CQL wire, against [`FakeNode`] with [`FakeTables`] as its handler:
//! the queue (`outbox`, at each message's place), the schedule (`schedule`), the slots
//! (`outbound_slots`) and cancelling, run as the conformance checks say, on tables
//! shaped by the schema's DDL (with the columns step 6 adds). A real ScyllaDB is still
//! the conformance suite with `SCYLLA_URI`.

use std::time::Duration;

use super::fake_node::FakeNode;
use super::fake_tables::FakeTables;
use super::proxy_tests::{KEYSPACE, connect};
use super::statements as st;
use crate::store::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_queue_the_schedule_and_cancels_pass_the_conformance_checks_over_the_wire() {
    let (node, tables) = FakeNode::over(KEYSPACE, FakeTables::new(), FakeTables::handle).await;
    let store = connect(&node, Duration::from_secs(5)).await;
    for statement in [
        st::PROMOTE_MESSAGE,
        st::CANCEL_MESSAGE,
        st::SCHEDULE_ADD,
        st::SCHEDULE_REMOVE,
        st::SCHEDULE_LIST,
    ] {
        assert!(
            store.prepared.contains_key(statement.name),
            "{}",
            statement.name
        );
    }
    conformance::check_message_advance(&store).await;
    conformance::check_queued_messages(&store).await;
    conformance::check_devices_with_queued(&store).await;
    conformance::check_outbound_slots(&store).await;
    conformance::check_reschedule_message(&store).await;
    conformance::check_scheduled_messages(&store).await;
    conformance::check_cancel_message(&store).await;
    {
        let tables = tables.lock().expect("tables");
        assert_eq!(
            tables.rows("schedule"),
            1,
            "one message still scheduled (the late one of the schedule check)"
        );
    }
    node.stop().await;
}
