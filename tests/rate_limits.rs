//! Rate limits and trust levels, end to end: the real binary, the simulator's inbox as
//! the judge of when messages arrived, a cluster gateway in front of real nodes.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use futures_util::future::join_all;
use serde_json::{Value, json};
use wafleet_load::scenario::cluster::LocalCluster;
use wafleet_load::scenario::process::{ADMIN_KEY, sse_events};

use common::Standalone;

const WAFLEET: &str = env!("CARGO_BIN_EXE_wafleet");

/// The acceptance table: NEWCOMER 5 a minute, at least 2 s apart, and a day of
/// 20 so that 50 concurrent sends reach it. The other levels keep their defaults.
fn acceptance_table() -> Value {
    json!({
        "newcomer": {"per_minute": 5, "per_hour": 20, "per_day": 20, "min_gap_ms": 2000,
                     "jitter_ms": 300, "max_in_flight": 50},
        "trusted": {"per_minute": 5, "per_hour": 60, "per_day": 400, "min_gap_ms": 12000,
                    "jitter_ms": 6000, "max_in_flight": 50},
        "verified": {"per_minute": 10, "per_hour": 200, "per_day": 1000, "min_gap_ms": 6000,
                     "jitter_ms": 3000, "max_in_flight": 50}
    })
}

/// `GET url` with the admin key, as JSON.
async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn unix_ms(rfc3339: &str) -> i64 {
    let at = humantime::parse_rfc3339(rfc3339).expect("an RFC 3339 time");
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_sends_through_a_gateway_keep_the_pace_and_the_quota_survives_a_move() {
    let mut cluster = LocalCluster::start(Path::new(WAFLEET), 2).await.unwrap();
    let http = reqwest::Client::new();
    let gw = cluster.gateway.base.clone();
    let sim = cluster.sims.all()[0].base.clone();

    // The table, through the gateway (which tells every node before it answers).
    let put = http
        .put(format!("{gw}/v1/settings/trust-levels"))
        .bearer_auth(ADMIN_KEY)
        .json(&acceptance_table())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let table: Value = get_json(&http, &format!("{gw}/v1/settings/trust-levels")).await;
    assert_eq!(table, acceptance_table());

    // One device, paired through the simulator.
    let mut events = Box::pin(
        sse_events(&http, &format!("{gw}/v1/events"), None)
            .await
            .unwrap(),
    );
    let create = http
        .post(format!("{gw}/v1/devices"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"id": "rl", "name": "rate limited"}))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 201);
    let start = http
        .post(format!("{gw}/v1/devices/rl/start"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 202);
    let owner = loop {
        let (kind, data) = tokio::time::timeout(common::WAIT, events.next())
            .await
            .expect("events while pairing")
            .expect("event stream open");
        if kind == "qr" {
            let scan = http
                .post(format!("{sim}/sim/scan"))
                .json(&json!({"qr": data["code"], "phone": "6281700000001"}))
                .send()
                .await
                .unwrap();
            assert_eq!(scan.status(), 200);
        } else if kind == "status" && data["status"] == "READY" {
            break data["node"].as_str().unwrap().to_owned();
        }
    };

    // 50 sends at once.
    let sends = (0..50).map(|n| {
        let (http, gw) = (http.clone(), gw.clone());
        async move {
            let response = http
                .post(format!("{gw}/v1/devices/rl/messages"))
                .bearer_auth(ADMIN_KEY)
                .json(&json!({"to": "6281700000002", "text": format!("m{n}")}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let body: Value = response.json().await.unwrap();
            (status, retry_after, body)
        }
    });
    let answers = join_all(sends).await;
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(status, _, _)| *status == 202)
        .map(|(_, _, body)| body)
        .collect();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status == 429)
        .collect();
    assert_eq!(
        accepted.len(),
        20,
        "the day's quota is accepted: {answers:?}"
    );
    assert_eq!(refused.len(), 30, "the rest is refused");
    let now_sends: Vec<_> = accepted
        .iter()
        .filter(|b| b["not_before"].is_null())
        .collect();
    assert_eq!(now_sends.len(), 1, "one goes at once, the rest are queued");
    let mut not_before: Vec<i64> = accepted
        .iter()
        .filter_map(|b| b["not_before"].as_str().map(unix_ms))
        .collect();
    not_before.sort_unstable();
    assert_eq!(not_before.len(), 19);
    for (_, retry_after, body) in &refused {
        assert_eq!(body["error"]["code"], "daily_quota_exceeded", "{body}");
        let retry_after = retry_after.expect("a Retry-After header");
        assert!(
            (86_000..=86_400).contains(&retry_after),
            "Retry-After {retry_after} s: a day after the first send"
        );
    }
    let limits: Value = get_json(&http, &format!("{gw}/v1/devices/rl/limits")).await;
    assert_eq!(limits["trust_level"], "newcomer");
    assert_eq!(promised(&limits, "day"), 20, "{limits}");
    assert_eq!(limits["day"]["remaining"], 0);

    // The phone's inbox: 5 in the first minute, none closer than 2 s. Wait for the 6th,
    // which the minute window holds back until a minute after the first.
    let deadline = Instant::now() + Duration::from_secs(90);
    let inbox = loop {
        let inbox: Vec<Value> = http
            .get(format!("{sim}/sim/phones/6281700000002/inbox"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if inbox.len() >= 6 {
            break inbox;
        }
        assert!(
            Instant::now() < deadline,
            "only {} delivered after 90 s",
            inbox.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut arrivals: Vec<i64> = inbox
        .iter()
        .map(|m| unix_ms(m["at"].as_str().unwrap()))
        .collect();
    arrivals.sort_unstable();
    let first = arrivals[0];
    println!(
        "arrivals, ms after the first: {:?}",
        arrivals.iter().map(|at| at - first).collect::<Vec<_>>()
    );
    let in_first_minute = arrivals.iter().filter(|&&at| at < first + 60_000).count();
    assert_eq!(
        in_first_minute,
        5,
        "arrivals (ms after the first): {:?}",
        arrivals.iter().map(|at| at - first).collect::<Vec<_>>()
    );
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= 2_000,
            "two arrivals {} ms apart",
            pair[1] - pair[0]
        );
    }
    let texts: HashSet<&str> = inbox.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts.len(), inbox.len(), "nothing delivered twice");

    // Kill the owner: the device moves, and its spent quota with it.
    let before: Value = get_json(&http, &format!("{gw}/v1/devices/rl/limits")).await;
    let victim = cluster
        .nodes
        .iter_mut()
        .find(|node| node.name == owner)
        .expect("the owner is a node of the cluster");
    victim.kill9().await;
    let new_owner = loop {
        let (kind, data) = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("events while moving")
            .expect("event stream open");
        if kind == "status" && data["status"] == "READY" && data["node"] != owner.as_str() {
            break data["node"].as_str().unwrap().to_owned();
        }
    };
    let after: Value = get_json(&http, &format!("{gw}/v1/devices/rl/limits")).await;
    println!("moved from {owner} to {new_owner}: before {before}, after {after}");
    for window in ["day", "hour"] {
        assert_eq!(
            (promised(&after, window), &after[window]["remaining"]),
            (promised(&before, window), &before[window]["remaining"]),
            "the {window}'s spent quota moved with the device"
        );
    }
    let refused = http
        .post(format!("{gw}/v1/devices/rl/messages"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"to": "6281700000002", "text": "one more"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        429,
        "the new owner refuses past the day's quota too"
    );
}

#[tokio::test]
async fn spent_quota_survives_kill9_and_a_new_table_applies_to_running_devices() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start_throttled(data.path()).await;
    let defaults = app.json("/v1/settings/trust-levels").await;
    assert_eq!(defaults["newcomer"]["per_day"], 100);
    assert_eq!(defaults["newcomer"]["min_gap_ms"], 20_000);
    app.pair("q", "6281800000001").await;

    // NEWCOMER by default: one now, then one per 20 s (plus jitter).
    let mut slots = Vec::new();
    for n in 0..3 {
        let sent = app
            .post(
                "/v1/devices/q/messages",
                json!({"to": "6281800000002", "text": format!("q{n}")}),
            )
            .await;
        assert_eq!(sent.status(), 202);
        let body: Value = sent.json().await.unwrap();
        slots.push(body["not_before"].as_str().map(unix_ms));
    }
    assert!(slots[0].is_none(), "the first goes at once");
    let (second, third) = (slots[1].unwrap(), slots[2].unwrap());
    assert!(third - second >= 20_000, "20 s apart at least");
    let before = app.json("/v1/devices/q/limits").await;
    assert_eq!(before["minute"]["spent"], 1, "{before}");
    assert_eq!(before["queued"], 2);
    assert_eq!(promised(&before, "day"), 3);

    // kill -9, restart on the same data: the same quota is spent.
    app.kill9().await;
    let app = Standalone::start_throttled(data.path()).await;
    app.wait_status("q", "READY").await;
    let after = app.json("/v1/devices/q/limits").await;
    for window in ["day", "hour"] {
        assert_eq!(
            (promised(&after, window), &after[window]["remaining"]),
            (promised(&before, window), &before[window]["remaining"]),
            "{before} vs {after}"
        );
    }

    // A table with a day of 3 for NEWCOMER applies to the running device at once.
    let mut table = app.json("/v1/settings/trust-levels").await;
    table["newcomer"] = json!({"per_minute": 3, "per_hour": 3, "per_day": 3,
        "min_gap_ms": 20000, "jitter_ms": 0});
    let put = app.put("/v1/settings/trust-levels", table.clone()).await;
    assert_eq!(put.status(), 200);
    let refused = app
        .post(
            "/v1/devices/q/messages",
            json!({"to": "6281800000002", "text": "q3"}),
        )
        .await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "daily_quota_exceeded");

    // An admin makes it VERIFIED: its quota applies from the next send.
    let verified = app
        .put("/v1/devices/q/trust-level", json!({"level": "verified"}))
        .await;
    assert_eq!(verified.status(), 200);
    let sent = app
        .post(
            "/v1/devices/q/messages",
            json!({"to": "6281800000002", "text": "q4"}),
        )
        .await;
    assert_eq!(sent.status(), 202);
    let limits = app.json("/v1/devices/q/limits").await;
    assert_eq!(limits["trust_level"], "verified");
    assert_eq!(promised(&limits, "day"), 4, "{limits}");

    // Bad tables and levels are refused, saying why.
    let mut bad = table.clone();
    bad["newcomer"]["per_minute"] = json!(10);
    let put = app.put("/v1/settings/trust-levels", bad).await;
    assert_eq!(put.status(), 422);
    let body: Value = put.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("newcomer.per_minute"),
        "{body}"
    );
    let put = app
        .put(
            "/v1/settings/trust-levels",
            json!({"newcomer": table["newcomer"]}),
        )
        .await;
    assert!(
        put.status() == 400 || put.status() == 422,
        "{}",
        put.status()
    );
    let level = app
        .put("/v1/devices/q/trust-level", json!({"level": "gold"}))
        .await;
    assert!(
        level.status() == 400 || level.status() == 422,
        "{}",
        level.status()
    );
    let missing = app
        .put("/v1/devices/nope/trust-level", json!({"level": "trusted"}))
        .await;
    assert_eq!(missing.status(), 404);
    let missing = app.get("/v1/devices/nope/limits").await;
    assert_eq!(missing.status(), 404);
}

/// The minimum gap holds between what the phone gets, across a device's runs: a message
/// handed late (its slot passed while the device was stopped) is followed by the next no
/// sooner than the gap, even when a new run (here a restart; in a cluster a move to
/// another node) hands that one. The next message's slot was planned from the late
/// one's slot, not from when it left: only the hand-offs the new run recalls keep it.
#[tokio::test(flavor = "multi_thread")]
async fn the_minimum_gap_holds_after_a_late_hand_off_when_a_new_run_sends_the_next() {
    let data = tempfile::tempdir().unwrap();
    let app = Standalone::start(data.path()).await;
    app.pair("gap", "6281800000011").await;
    let gap_ms = 5_000;
    let level = json!({"per_minute": 12, "per_hour": 100, "per_day": 1_000,
                       "min_gap_ms": gap_ms, "jitter_ms": 0, "max_in_flight": 50});
    let put = app
        .put(
            "/v1/settings/trust-levels",
            json!({"newcomer": level, "trusted": level, "verified": level}),
        )
        .await;
    assert_eq!(put.status(), 200);
    let phone = "6281800000012";
    let mut slots = Vec::new();
    for n in 0..3 {
        let sent = app
            .post(
                "/v1/devices/gap/messages",
                json!({"to": phone, "text": format!("g{n}")}),
            )
            .await;
        assert_eq!(sent.status(), 202);
        let body: Value = sent.json().await.unwrap();
        slots.push(body["not_before"].as_str().map(unix_ms));
    }
    let arrivals = |n: usize| {
        let app = &app;
        async move {
            let deadline = Instant::now() + common::WAIT;
            loop {
                let inbox = common::inbox_of(&app.http, &app.base, phone).await;
                let inbox = inbox.as_array().unwrap().clone();
                if inbox.len() >= n {
                    return inbox
                        .iter()
                        .map(|m| unix_ms(m["at"].as_str().unwrap()))
                        .collect::<Vec<i64>>();
                }
                assert!(Instant::now() < deadline, "{n} messages never arrived");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    arrivals(1).await;

    // Stopped past the second message's slot: it leaves late, when the device runs again.
    let stop = app.post("/v1/devices/gap/stop", json!({})).await;
    assert_eq!(stop.status(), 202);
    app.wait_status("gap", "STOPPED").await;
    let second_slot = slots[1].expect("the second waits for its slot");
    let now = wafleet_node::clock::now_ms();
    tokio::time::sleep(Duration::from_millis(
        (second_slot + 1_500 - now).max(0) as u64
    ))
    .await;
    let start = app.post("/v1/devices/gap/start", json!({})).await;
    assert_eq!(start.status(), 202);
    let second = arrivals(2).await[1];
    assert!(second >= second_slot + 1_500, "the second left late");
    // Its receipt is stored; then a new run of the device sends the third.
    let deadline = Instant::now() + common::WAIT;
    loop {
        let listed = app
            .json("/v1/devices/gap/messages?direction=out&status=queued")
            .await;
        if listed["messages"].as_array().unwrap().len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the second never left the queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let restart = app.post("/v1/devices/gap/restart", json!({})).await;
    assert_eq!(restart.status(), 202);
    let third = arrivals(3).await[2];
    assert!(
        third - second >= gap_ms,
        "the third reached the phone {} ms after the second (gap {gap_ms} ms; its slot was {} ms \
         after the second's arrival)",
        third - second,
        slots[2].unwrap() - second
    );
}

/// Sends of a window of `/limits` that went or are promised: its `spent` (slots due by
/// now) plus the device's `queued` (slots after now, which every window counts).
fn promised(limits: &Value, window: &str) -> u64 {
    limits[window]["spent"].as_u64().expect("spent") + limits["queued"].as_u64().expect("queued")
}
