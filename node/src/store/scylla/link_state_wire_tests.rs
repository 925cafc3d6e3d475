//! Link state over the CQL wire, against [`FakeNode`] with [`FakeTables`] as its
//! handler: put, get, list, delete and clear, run as the conformance checks say. The
//! checks of many keys at once (`check_link_state_any`, `check_link_state_many`) are
//! left out: ScyllaDB runs them as the trait's default loops of these calls, over a
//! thousand round trips through the fake (minutes). A real ScyllaDB is still the
//! conformance suite with `SCYLLA_URI`.

use std::time::Duration;

use super::fake_node::FakeNode;
use super::fake_tables::FakeTables;
use super::proxy_tests::{KEYSPACE, connect};
use crate::store::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_state_passes_the_conformance_checks_over_the_wire() {
    let (node, _tables) = FakeNode::over(KEYSPACE, FakeTables::new(), FakeTables::handle).await;
    let store = connect(&node, Duration::from_secs(5)).await;
    conformance::check_link_state_put_get_list(&store).await;
    conformance::check_link_state_isolation(&store).await;
    conformance::check_link_state_unknown_device(&store).await;
    node.stop().await;
}
