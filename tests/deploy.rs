//! The operations kit holds together: `deploy/` (Prometheus config and alert rules,
//! Grafana dashboards, Kubernetes manifests, Dockerfile) and `docker-compose.yml`.
//!
//! - Dashboards and rules parse, are structurally sane, and use only metric names the
//!   code registers (`wafleet_gateway::metrics::all()`); every registered metric is shown
//!   on some dashboard.
//! - When `promtool` is on the PATH (Debian: `apt-get install prometheus`): `promtool
//!   check rules`, `check config`, `test rules` (alerts.test.yml), and every dashboard
//!   query as a recording rule so that PromQL syntax is checked. Without it, each test
//!   says it skipped that part.
//! - docker-compose.yml and the manifests parse as YAML, and what they reference exists:
//!   services, mounted files, Secrets and ConfigMaps and their keys, ports; each config
//!   file they mount loads through `wafleet-cluster-config` with the environment the
//!   container gets (so every `WAFLEET__SECTION__KEY` names a real key).
//! - When `kubectl` is on the PATH: `kubectl kustomize deploy/kubernetes` builds.
//! - When `docker-compose` is on the PATH (Debian: `apt-get install docker-compose`):
//!   `docker-compose config` accepts docker-compose.yml (it needs no Docker engine).
//! - When `kubernetes-validate` is on the PATH (PyPI: `pip install kubernetes-validate`):
//!   every manifest validates, strictly (no unknown fields), against the Kubernetes
//!   API's OpenAPI schema it bundles, and so does the kustomize build when `kubectl` is
//!   there too. It has no schema for cert-manager's kinds (it warns and passes them):
//!   those objects (cluster TLS) are checked field by field here instead.
//! - Cluster TLS: every node's and gateway's `[cluster.tls]` files are where the
//!   certificates are mounted (cert-manager's Secret; the compose one-shot service's
//!   volume), and, when `openssl` is on the PATH, the compose script's certificates load
//!   as a node loads them.
//!
//! A tool that is missing makes its check say it skipped, except when
//! `WAFLEET_REQUIRE_TOOLS` is set (`.ci/run` sets it after installing promtool,
//! docker-compose and kubernetes-validate): then a missing tool fails the check.
//!
//! Not covered here: `docker compose up` and `docker build` (no Docker engine runs on
//! the machines this is built on) and a server-side dry run of the manifests (no API
//! server).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::tools::{on_path, tool};
use serde_json::Value;
use wafleet_cluster_config::{GatewaySettings, NodeSettings};

// ---------- helpers ----------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Every YAML document of a file (separated by `---` lines), as JSON values.
fn yaml_docs(relative: &str) -> Vec<Value> {
    let text = read(relative);
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.iter()
        .map(|doc| {
            serde_yaml::from_str::<Value>(doc)
                .unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn yaml(relative: &str) -> Value {
    let mut docs = yaml_docs(relative);
    assert_eq!(docs.len(), 1, "{relative}: one document expected");
    docs.remove(0)
}

fn json_file(relative: &str) -> Value {
    serde_json::from_str(&read(relative))
        .unwrap_or_else(|e| panic!("{relative} is not valid JSON: {e}"))
}

fn str_of<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

fn array<'a>(value: &'a Value, pointer: &str) -> &'a Vec<Value> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no array at {pointer}"))
}

/// `host:port` split, with the port as a number.
fn host_port(address: &str) -> (String, u16) {
    let (host, port) = address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{address} is not host:port"));
    (
        host.to_owned(),
        port.parse()
            .unwrap_or_else(|_| panic!("{address}: bad port")),
    )
}

/// `scheme://host:port/...` → (host, port).
fn url_host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    host_port(authority)
}

fn run(program: &Path, args: &[&str], dir: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{text}",
        program.display()
    );
    text
}

/// Writes `text` to a temporary file and loads it as a node's or a gateway's config with
/// `env` (the process's other variables are not read).
fn load_config(kind: &str, text: &str, env: &BTreeMap<String, String>) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{kind}.toml"));
    std::fs::write(&path, text).unwrap();
    let vars: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("WAFLEET__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match kind {
        "node" => Loaded::Node(Box::new(
            NodeSettings::load_with_env(&path, vars)
                .unwrap_or_else(|e| panic!("node config does not load: {e}")),
        )),
        "gateway" => Loaded::Gateway(Box::new(
            GatewaySettings::load_with_env(&path, vars)
                .unwrap_or_else(|e| panic!("gateway config does not load: {e}")),
        )),
        other => panic!("no config for {other}"),
    }
}

#[derive(Debug)]
enum Loaded {
    Node(Box<NodeSettings>),
    Gateway(Box<GatewaySettings>),
}

fn assert_master_key(value: &str, whose: &str) {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap_or_else(|e| panic!("{whose}: WAFLEET_MASTER_KEY is not base64: {e}"));
    assert_eq!(
        bytes.len(),
        32,
        "{whose}: WAFLEET_MASTER_KEY must be 32 bytes"
    );
}

// ---------- metric names ----------

const DASHBOARDS: [&str; 3] = [
    "deploy/grafana/dashboards/wafleet-overview.json",
    "deploy/grafana/dashboards/wafleet-node.json",
    "deploy/grafana/dashboards/wafleet-device.json",
];

/// Every `wafleet_…` metric-like token in `text`.
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(found) = text[i..].find("wafleet_") {
        let start = i + found;
        let boundary = start == 0 || {
            let before = bytes[start - 1];
            !(before.is_ascii_alphanumeric() || before == b'_' || before == b':')
        };
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            out.insert(text[start..end].trim_end_matches('_').to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

fn histograms() -> BTreeSet<&'static str> {
    wafleet_node::metrics::HISTOGRAM_BUCKETS
        .iter()
        .map(|(name, _)| *name)
        .chain([wafleet_gateway::metrics::HTTP_DURATION])
        .collect()
}

/// The registered metric a token refers to (a histogram's `_bucket`, `_sum` and
/// `_count` series name the histogram), or `None`.
fn registered(token: &str) -> Option<&'static str> {
    let all: BTreeSet<&'static str> = wafleet_gateway::metrics::all().collect();
    if let Some(name) = all.get(token) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = token.strip_suffix(suffix)?;
        histograms().get(base).copied()
    })
}

/// Every PromQL expression of a dashboard, with its panel's title.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in array(dashboard, "/panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap_or("").to_owned(),
                str_of(target, "/expr").to_owned(),
            ));
        }
    }
    out
}

#[test]
fn registered_metric_names_follow_the_naming_rule_and_are_listed_once() {
    let names: Vec<&str> = wafleet_gateway::metrics::all().collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "a metric is listed twice");
    for name in &names {
        let rest = name
            .strip_prefix("wafleet_")
            .unwrap_or_else(|| panic!("{name}: not wafleet_<subsystem>_<thing>_<unit>"));
        assert!(
            rest.split('_').count() >= 2
                && rest.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "{name}: not wafleet_<subsystem>_<thing>_<unit>"
        );
        if histograms().contains(name) {
            assert!(name.ends_with("_seconds"), "{name}: histograms are timings");
        }
    }
}

/// A metric name written in the code but missing from the lists would escape the checks
/// below: every `"wafleet_…"` string literal of the two crates' sources is listed.
#[test]
fn every_metric_name_in_the_sources_is_in_the_lists() {
    let listed: BTreeSet<&str> = wafleet_gateway::metrics::all().collect();
    let mut files = Vec::new();
    for dir in ["node/src", "gateway/src"] {
        let mut stack = vec![repo().join(dir)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
    }
    let mut missing = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for piece in text.split("\"wafleet_").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            // A literal that is a whole metric name (not a key prefix such as "wafleet_x{").
            if piece[name.len()..].starts_with('"') {
                let name = format!("wafleet_{name}");
                if !listed.contains(name.as_str()) {
                    missing.insert(format!("{name} ({})", file.display()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "not in metrics::ALL: {missing:?}");
}

#[test]
fn dashboards_and_rules_use_only_registered_metrics_and_show_every_one() {
    let mut unknown = BTreeSet::new();
    let mut shown = BTreeSet::new();
    for file in DASHBOARDS {
        let dashboard = json_file(file);
        for (_, expr) in dashboard_exprs(&dashboard) {
            for token in metric_tokens(&expr) {
                match registered(&token) {
                    Some(name) => {
                        shown.insert(name);
                    }
                    None => {
                        unknown.insert(format!("{token} ({file})"));
                    }
                }
            }
        }
    }
    let rules = yaml("deploy/prometheus/alerts.yml");
    let mut used_by_rules = 0;
    for group in array(&rules, "/groups") {
        for rule in array(group, "/rules") {
            for token in metric_tokens(str_of(rule, "/expr")) {
                used_by_rules += 1;
                if registered(&token).is_none() {
                    unknown.insert(format!("{token} (alerts.yml)"));
                }
            }
        }
    }
    // The rule file's comments and annotations name metrics too: same rule.
    for token in metric_tokens(&read("deploy/prometheus/alerts.yml")) {
        if registered(&token).is_none() {
            unknown.insert(format!("{token} (alerts.yml text)"));
        }
    }
    assert!(
        unknown.is_empty(),
        "not registered by the code: {unknown:?}"
    );
    assert!(used_by_rules > 10, "the rules hardly use wafleet metrics");
    let hidden: Vec<&str> = wafleet_gateway::metrics::all()
        .filter(|name| !shown.contains(name))
        .collect();
    assert!(hidden.is_empty(), "on no dashboard: {hidden:?}");
}

#[test]
fn the_metric_token_scanner_handles_suffixes_and_boundaries() {
    let tokens = metric_tokens(
        "rate(wafleet_store_request_duration_seconds_bucket{a=\"b\"}[5m]) / x:wafleet_no + wafleet_node_devices",
    );
    assert_eq!(
        tokens.into_iter().collect::<Vec<_>>(),
        [
            "wafleet_node_devices",
            "wafleet_store_request_duration_seconds_bucket"
        ]
    );
    assert_eq!(
        registered("wafleet_store_request_duration_seconds_bucket"),
        Some("wafleet_store_request_duration_seconds")
    );
    assert_eq!(registered("wafleet_messages_total_bucket"), None);
    assert_eq!(registered("wafleet_nope_total"), None);
}

// ---------- dashboards ----------

/// Variables Grafana defines itself.
const GRAFANA_BUILTINS: [&str; 6] = [
    "__rate_interval",
    "__interval",
    "__range",
    "__all",
    "__dashboard",
    "__name",
];

/// `$name` and `${name}` references in `text`.
fn variable_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for piece in text.split('$').skip(1) {
        let piece = piece.strip_prefix('{').unwrap_or(piece);
        let name: String = piece
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && !name.chars().all(|c| c.is_ascii_digit()) {
            out.insert(name);
        }
    }
    out
}

#[test]
fn dashboards_are_structurally_sane() {
    let mut uids = BTreeSet::new();
    for file in DASHBOARDS {
        let dashboard = json_file(file);
        let uid = str_of(&dashboard, "/uid");
        assert!(uid.len() <= 40, "{file}: uid too long for Grafana");
        assert!(uids.insert(uid.to_owned()), "{file}: uid {uid} used twice");
        assert!(!str_of(&dashboard, "/title").is_empty());
        assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
        let variables: BTreeSet<String> = array(&dashboard, "/templating/list")
            .iter()
            .map(|v| str_of(v, "/name").to_owned())
            .collect();
        assert!(
            variables.contains("datasource"),
            "{file}: no datasource variable"
        );

        let panels = array(&dashboard, "/panels");
        assert!(panels.len() >= 5, "{file}: too few panels");
        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(u64, u64, u64, u64, String)> = Vec::new();
        for panel in panels {
            let title = str_of(panel, "/title").to_owned();
            let id = panel["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "{file}: panel id {id} twice");
            let kind = str_of(panel, "/type");
            assert!(
                ["row", "timeseries", "stat", "text"].contains(&kind),
                "{file}: {title}: unexpected panel type {kind}"
            );
            let pos = |k: &str| panel["gridPos"][k].as_u64().expect("gridPos");
            let (x, y, w, h) = (pos("x"), pos("y"), pos("w"), pos("h"));
            assert!(
                w > 0 && h > 0 && x + w <= 24,
                "{file}: {title}: bad gridPos"
            );
            for (bx, by, bw, bh, other) in &boxes {
                let overlap = x < bx + bw && *bx < x + w && y < by + bh && *by < y + h;
                assert!(!overlap, "{file}: {title} overlaps {other}");
            }
            boxes.push((x, y, w, h, title.clone()));
            let mut text = title.clone();
            match kind {
                "timeseries" | "stat" => {
                    assert_eq!(
                        str_of(panel, "/datasource/uid"),
                        "${datasource}",
                        "{file}: {title}"
                    );
                    let targets = array(panel, "/targets");
                    assert!(!targets.is_empty(), "{file}: {title}: no query");
                    let mut refs = BTreeSet::new();
                    for target in targets {
                        assert!(refs.insert(str_of(target, "/refId").to_owned()));
                        let expr = str_of(target, "/expr");
                        assert!(expr.contains("wafleet_") || expr.contains("up{"));
                        assert_balanced(expr, &format!("{file}: {title}"));
                        text.push_str(expr);
                    }
                }
                "text" => text.push_str(str_of(panel, "/options/content")),
                _ => {}
            }
            for name in variable_refs(&text) {
                assert!(
                    variables.contains(&name) || GRAFANA_BUILTINS.contains(&name.as_str()),
                    "{file}: {title}: ${name} is not a variable of the dashboard"
                );
            }
        }
    }
}

fn assert_balanced(expr: &str, what: &str) {
    let mut stack = Vec::new();
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' => in_string = !in_string,
            _ if in_string => {}
            '(' | '{' | '[' => stack.push(c),
            ')' | '}' | ']' => {
                let open = stack.pop();
                let expected = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                assert_eq!(open, Some(expected), "{what}: unbalanced {expr}");
            }
            _ => {}
        }
    }
    assert!(stack.is_empty() && !in_string, "{what}: unbalanced {expr}");
}

#[test]
fn grafana_provisioning_points_at_the_dashboards_and_prometheus() {
    let compose = yaml("docker-compose.yml");
    let grafana = &compose["services"]["grafana"];
    let mounts = bind_mounts(grafana);
    let provider = yaml("deploy/grafana/provisioning/dashboards/wafleet.yml");
    let path = str_of(&provider, "/providers/0/options/path");
    assert_eq!(
        mounts.get(path).map(String::as_str),
        Some("./deploy/grafana/dashboards"),
        "the dashboards provider reads {path}, which must be the dashboards folder"
    );
    let datasource = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let (host, port) = url_host_port(str_of(&datasource, "/datasources/0/url"));
    assert!(compose["services"][&host].is_object(), "no service {host}");
    assert_eq!(port, 9090);
    let home = str_of(
        grafana,
        "/environment/GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH",
    );
    let file = home
        .strip_prefix(&format!("{path}/"))
        .expect("home dashboard in the provisioned folder");
    assert!(
        repo()
            .join("deploy/grafana/dashboards")
            .join(file)
            .is_file()
    );
}

// ---------- Prometheus ----------

#[test]
fn alert_rules_have_the_expected_groups_and_alerts() {
    let rules = yaml("deploy/prometheus/alerts.yml");
    let groups: Vec<&str> = array(&rules, "/groups")
        .iter()
        .map(|g| str_of(g, "/name"))
        .collect();
    assert_eq!(
        groups,
        [
            "wafleet-availability",
            "wafleet-devices",
            "wafleet-recovery",
            "wafleet-bans",
            "wafleet-dependencies",
            "wafleet-webhooks"
        ]
    );
    let mut alerts = BTreeSet::new();
    for group in array(&rules, "/groups") {
        for rule in array(group, "/rules") {
            let name = str_of(rule, "/alert");
            assert!(alerts.insert(name), "alert {name} twice");
            assert!(
                ["critical", "warning", "info"].contains(&str_of(rule, "/labels/severity")),
                "{name}: severity"
            );
            assert!(!str_of(rule, "/annotations/summary").is_empty());
            let expr = str_of(rule, "/expr");
            assert_balanced(expr, name);
            // Every process exports both crates' series: a rule must say whose it reads.
            if expr.contains("wafleet_") && !expr.contains("wafleet_store_errors_total") {
                assert!(expr.contains("job=\"wafleet-"), "{name}: select a job");
            }
        }
    }
    for expected in [
        "WafleetNodeDown",
        "WafleetDevicesNotReady",
        "WafleetRecoverySlow",
        "WafleetBanSignal",
        "WafleetWebhookBacklogGrowing",
        "WafleetWebhookDeadLetters",
    ] {
        assert!(alerts.contains(expected), "no alert {expected}");
    }
}

#[test]
fn prometheus_configs_scrape_the_jobs_the_rules_and_dashboards_select() {
    for file in [
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/prometheus-kubernetes.yml",
    ] {
        let config = yaml(file);
        let rule_files = array(&config, "/rule_files");
        assert_eq!(rule_files, &[Value::from("alerts.yml")], "{file}");
        let text = read(file);
        for job in ["wafleet-node", "wafleet-gateway"] {
            assert!(text.contains(job), "{file}: no {job}");
        }
    }
}

#[test]
fn promtool_checks_rules_configs_and_every_dashboard_query() {
    let Some(promtool) = tool(
        "promtool",
        "promtool check rules/config/test rules",
        "Debian: apt-get install prometheus",
    ) else {
        return;
    };
    let dir = repo().join("deploy/prometheus");
    run(&promtool, &["check", "rules", "alerts.yml"], &dir);
    run(&promtool, &["check", "config", "prometheus.yml"], &dir);
    run(&promtool, &["test", "rules", "alerts.test.yml"], &dir);
    // Debian's promtool is built without Kubernetes service discovery: when it refuses
    // kubernetes_sd_configs, say so rather than fail.
    let output = Command::new(&promtool)
        .args(["check", "config", "prometheus-kubernetes.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        assert!(
            text.contains("field kubernetes_sd_configs not found"),
            "prometheus-kubernetes.yml: {text}"
        );
        eprintln!(
            "this promtool has no Kubernetes service discovery: prometheus-kubernetes.yml \
             checked as YAML only"
        );
    }

    // Every dashboard query, as a recording rule, for a PromQL syntax check.
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for file in DASHBOARDS {
        for (i, (_, expr)) in dashboard_exprs(&json_file(file)).into_iter().enumerate() {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("${device}", "x")
                .replace("$instance", ".*")
                .replace("$level", ".*");
            rules.push_str(&format!(
                "      - record: dashboard:q{i}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            ));
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("dashboards.yml"), rules).unwrap();
    run(&promtool, &["check", "rules", "dashboards.yml"], tmp.path());
}

// ---------- docker-compose.yml ----------

/// A compose value with `${VAR:-default}` replaced by its default (what `docker compose
/// up` uses without an .env file). A `${VAR}` without default is an error: `up` must
/// work as it is.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed ${") + start;
        let inner = &rest[start + 2..end];
        let (_, default) = inner
            .split_once(":-")
            .unwrap_or_else(|| panic!("${{{inner}}} has no default"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .map(|env| {
            env.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => interpolate(s),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Bind mounts: container path → host path (as written).
fn bind_mounts(service: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for volume in service["volumes"].as_array().into_iter().flatten() {
        let parts: Vec<&str> = volume
            .as_str()
            .expect("short volume syntax")
            .split(':')
            .collect();
        if parts[0].starts_with("./") {
            out.insert(parts[1].to_owned(), parts[0].to_owned());
        }
    }
    out
}

fn command(service: &Value) -> Vec<String> {
    array(service, "/command")
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Container port → host port of a service's published ports.
fn published(service: &Value) -> BTreeMap<u16, u16> {
    service["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let (host, container) = p.as_str().unwrap().split_once(':').unwrap();
            (container.parse().unwrap(), host.parse().unwrap())
        })
        .collect()
}

#[test]
fn compose_services_files_and_ports_hold_together() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().expect("services");
    for expected in [
        "scylla",
        "redis",
        "sim",
        "node-1",
        "node-2",
        "node-3",
        "gateway",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(expected), "no service {expected}");
    }
    let mut built = 0;
    for (name, service) in services {
        for dependency in service["depends_on"]
            .as_array()
            .map(|a| a.iter().map(|d| d.as_str().unwrap().to_owned()).collect())
            .or_else(|| {
                service["depends_on"]
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>())
            })
            .unwrap_or_default()
        {
            assert!(
                services.contains_key(&dependency),
                "{name} depends on {dependency}"
            );
        }
        for (target, source) in bind_mounts(service) {
            assert!(
                repo().join(&source).exists(),
                "{name} mounts {source} at {target}: no such file in the repository"
            );
        }
        if let Some(build) = service.get("build") {
            built += 1;
            assert_eq!(str_of(build, "/context"), ".");
            assert!(repo().join(str_of(build, "/dockerfile")).is_file());
        }
        if str_of(service, "/image") == "wafleet:local" && service.get("build").is_none() {
            assert_eq!(
                str_of(service, "/pull_policy"),
                "never",
                "{name}: the local image is built, never pulled"
            );
        }
    }
    assert_eq!(built, 1, "the wafleet image is built once");
}

#[test]
fn compose_configs_load_with_each_container_s_environment() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().unwrap();
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let scraped = |job: &str| -> BTreeSet<(String, u16)> {
        array(&prometheus, "/scrape_configs")
            .iter()
            .filter(|c| c["job_name"] == job)
            .flat_map(|c| array(c, "/static_configs"))
            .flat_map(|s| array(s, "/targets"))
            .map(|t| host_port(t.as_str().unwrap()))
            .collect()
    };
    let service_port = |address: &str, what: &str| {
        let (host, port) = host_port(address);
        assert!(services.contains_key(&host), "{what}: no service {host}");
        (host, port)
    };

    let mut sim_port = None;
    let mut nodes: BTreeMap<String, NodeSettings> = BTreeMap::new();
    let mut gateways = Vec::new();
    for (name, service) in services {
        if str_of(service, "/image") != "wafleet:local" {
            continue;
        }
        let args = command(service);
        let env = environment(service);
        match args[0].as_str() {
            "sim" => {
                sim_port = Some(host_port(flag(&args, "--listen").unwrap()).1);
                continue;
            }
            "node" => assert_master_key(&env["WAFLEET_MASTER_KEY"], name),
            "gateway" => {
                assert!(!env["WAFLEET_ADMIN_KEY"].is_empty(), "{name}: admin key");
                // It opens the message texts and event payloads the nodes seal.
                assert_master_key(&env["WAFLEET_MASTER_KEY"], name);
            }
            other => panic!("{name}: unexpected command {other}"),
        }
        let config = flag(&args, "--config").expect("--config");
        let source = bind_mounts(service)
            .get(config)
            .unwrap_or_else(|| panic!("{name}: {config} is not mounted"))
            .clone();
        match load_config(&args[0], &read(&source), &env) {
            Loaded::Node(node) => {
                nodes.insert(name.clone(), *node);
            }
            Loaded::Gateway(gateway) => gateways.push((name.clone(), *gateway)),
        }
    }
    let sim_port = sim_port.expect("a sim service");
    assert_eq!(nodes.len(), 3);
    assert_eq!(gateways.len(), 1);

    let node_scrapes = scraped("wafleet-node");
    let names: BTreeSet<&str> = nodes.values().map(|n| n.node.name.as_str()).collect();
    assert_eq!(names.len(), 3, "node names must differ");
    for (service, node) in &nodes {
        assert_eq!(node.node.name, *service);
        let env = environment(&services[service]);
        assert!(
            node.store
                .master_key_source(env.contains_key("WAFLEET_MASTER_KEY"))
                .is_ok(),
            "{service} has no master key"
        );
        assert_eq!(
            node.node.advertised_host(),
            *service,
            "peers dial the service name"
        );
        assert_eq!(node.node.seeds.len(), 2);
        for seed in &node.node.seeds {
            let (host, port) = service_port(seed, service);
            assert_ne!(host, *service, "{service} seeds itself");
            assert_eq!(port, nodes[&host].node.cluster_listen.port());
        }
        let http = node.node.http_listen.port();
        assert!(
            node_scrapes.contains(&(service.clone(), http)),
            "{service} not scraped"
        );
        assert!(published(&services[service]).contains_key(&http));
        for uri in &node.store.scylla.uris {
            service_port(uri, service);
        }
        let (redis, _) = url_host_port(&node.redis.url);
        assert!(services.contains_key(&redis));
        let sim_url = node.link.sim_url.as_deref().expect("sim_url");
        let (sim, port) = url_host_port(sim_url);
        assert_eq!((sim.as_str(), port), ("sim", sim_port));
        assert_eq!(
            node.cluster, nodes["node-1"].cluster,
            "one [cluster] section"
        );
    }
    let (service, gateway) = &gateways[0];
    assert_eq!(
        gateway.gateway.advertised_host(),
        *service,
        "peers dial the gateway by its service name, like the nodes"
    );
    assert_ne!(
        gateway.gateway.cluster_listen.port(),
        0,
        "peers need a fixed port to dial"
    );
    assert_eq!(gateway.cluster, nodes["node-1"].cluster);
    assert_eq!(gateway.store, nodes["node-1"].store);
    assert_eq!(gateway.redis.url, nodes["node-1"].redis.url);
    let seeded: BTreeSet<String> = gateway
        .gateway
        .seeds
        .iter()
        .map(|s| service_port(s, service).0)
        .collect();
    assert_eq!(seeded, nodes.keys().cloned().collect());
    let listen = gateway.gateway.listen.port();
    assert_eq!(
        published(&services[service]).get(&listen),
        Some(&8080),
        "the README's walkthrough talks to 127.0.0.1:8080"
    );
    assert_eq!(published(&services["sim"]).get(&sim_port), Some(&8090));
    let metrics = gateway.gateway.metrics_listen.map_or(listen, |m| m.port());
    assert!(
        scraped("wafleet-gateway").contains(&(service.clone(), metrics)),
        "the gateway is scraped where it serves /metrics"
    );
}

// ---------- Kubernetes ----------

const MANIFESTS: &str = "deploy/kubernetes";

fn manifests() -> Vec<Value> {
    let kustomization = yaml(&format!("{MANIFESTS}/kustomization.yaml"));
    let listed: Vec<String> = array(&kustomization, "/resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(repo().join(MANIFESTS))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, on_disk, "kustomization.yaml lists every manifest");
    listed
        .iter()
        .flat_map(|file| yaml_docs(&format!("{MANIFESTS}/{file}")))
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

/// The pod IP [`pod_env`] gives a `status.podIP` fieldRef.
const POD_IP: &str = "10.244.1.17";

/// The environment a container starts with, as the kubelet builds it: `$(VAR)`
/// expanded from earlier entries, the pod name and IP from their fieldRefs ([`POD_IP`]
/// for every pod), secrets from the stand-in values given.
fn pod_env(
    container: &Value,
    pod_name: &str,
    secrets: &HashMap<&str, &str>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for entry in container["env"].as_array().into_iter().flatten() {
        let name = str_of(entry, "/name").to_owned();
        let value = if let Some(value) = entry["value"].as_str() {
            let mut value = value.to_owned();
            for (k, v) in &env {
                value = value.replace(&format!("$({k})"), v);
            }
            assert!(!value.contains("$("), "{name}: unresolved {value}");
            value
        } else if entry.pointer("/valueFrom/fieldRef/fieldPath") == Some(&"metadata.name".into()) {
            pod_name.to_owned()
        } else if entry.pointer("/valueFrom/fieldRef/fieldPath") == Some(&"status.podIP".into()) {
            POD_IP.to_owned()
        } else if let Some(key) = entry
            .pointer("/valueFrom/secretKeyRef/key")
            .and_then(Value::as_str)
        {
            secrets[key].to_owned()
        } else {
            panic!("{name}: unexpected env source {entry}")
        };
        env.insert(name, value);
    }
    env
}

fn container_port(container: &Value, name: &str) -> u16 {
    array(container, "/ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port {name}")) as u16
}

/// The config file a container reads: `--config PATH` → its volume mount → the
/// ConfigMap key behind it.
fn mounted_config(objects: &[Value], pod: &Value, container: &Value) -> String {
    let line: String = container["command"]
        .as_array()
        .into_iter()
        .chain(container["args"].as_array())
        .flatten()
        .map(|a| a.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let path = line
        .split_whitespace()
        .skip_while(|w| *w != "--config")
        .nth(1)
        .expect("--config PATH");
    let mount = array(container, "/volumeMounts")
        .iter()
        .find(|m| m["mountPath"] == path)
        .unwrap_or_else(|| panic!("{path} is not mounted"));
    let volume = array(pod, "/volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("volume");
    let config_map = named(objects, "ConfigMap", str_of(volume, "/configMap/name"));
    let key = str_of(mount, "/subPath");
    assert!(
        array(volume, "/configMap/items")
            .iter()
            .any(|i| i["key"] == key && i["path"] == key),
        "{key} not projected"
    );
    str_of(config_map, &format!("/data/{key}")).to_owned()
}

#[test]
fn kubernetes_manifests_reference_what_exists() {
    let objects = manifests();
    let namespace = str_of(named(&objects, "Namespace", "wafleet"), "/metadata/name");
    for object in &objects {
        assert!(object["apiVersion"].is_string() && object["kind"].is_string());
        if object["kind"] != "Namespace" {
            assert_eq!(str_of(object, "/metadata/namespace"), namespace);
        }
    }
    let workloads: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "StatefulSet" || o["kind"] == "Deployment")
        .collect();
    for workload in &workloads {
        let name = str_of(workload, "/metadata/name");
        let pod = &workload["spec"]["template"];
        assert!(selects(
            &workload["spec"]["selector"]["matchLabels"],
            &pod["metadata"]["labels"]
        ));
        let spec = &pod["spec"];
        let volumes: BTreeSet<&str> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| str_of(v, "/name"))
            .collect();
        for container in array(spec, "/containers") {
            let ports: BTreeSet<&str> = array(container, "/ports")
                .iter()
                .map(|p| str_of(p, "/name"))
                .collect();
            for probe in ["readinessProbe", "livenessProbe"] {
                if let Some(port) = container[probe]
                    .pointer("/httpGet/port")
                    .or_else(|| container[probe].pointer("/tcpSocket/port"))
                {
                    assert!(
                        ports.contains(port.as_str().unwrap()),
                        "{name}: {probe} port"
                    );
                }
            }
            for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                assert!(volumes.contains(str_of(mount, "/name")), "{name}: volume");
            }
            for entry in container["env"].as_array().into_iter().flatten() {
                if let Some(secret) = entry.pointer("/valueFrom/secretKeyRef") {
                    let object = named(&objects, "Secret", str_of(secret, "/name"));
                    let key = str_of(secret, "/key");
                    assert!(
                        object["stringData"][key].is_string() || object["data"][key].is_string(),
                        "{name}: secret key {key}"
                    );
                }
            }
            if let Some(port) = pod["metadata"]["annotations"]["prometheus.io/port"].as_str() {
                let port: u64 = port.parse().unwrap();
                assert!(
                    array(container, "/ports")
                        .iter()
                        .any(|p| p["containerPort"] == port),
                    "{name}: scraped port {port} is no container port"
                );
            }
        }
        for volume in spec["volumes"].as_array().into_iter().flatten() {
            if let Some(map) = volume.pointer("/configMap/name") {
                named(&objects, "ConfigMap", map.as_str().unwrap());
            }
        }
    }
    for service in of_kind(&objects, "Service") {
        let name = str_of(service, "/metadata/name");
        let selector = &service["spec"]["selector"];
        let backing: Vec<&&Value> = workloads
            .iter()
            .filter(|w| selects(selector, &w["spec"]["template"]["metadata"]["labels"]))
            .collect();
        assert_eq!(backing.len(), 1, "Service {name} selects one workload");
        let container = &backing[0]["spec"]["template"]["spec"]["containers"][0];
        for port in array(service, "/spec/ports") {
            container_port(container, str_of(port, "/targetPort"));
        }
    }
    for budget in of_kind(&objects, "PodDisruptionBudget") {
        let selector = &budget["spec"]["selector"]["matchLabels"];
        assert!(
            workloads
                .iter()
                .any(|w| selects(selector, &w["spec"]["template"]["metadata"]["labels"])),
            "PDB {} selects nothing",
            str_of(budget, "/metadata/name")
        );
    }

    let nodes = named(&objects, "StatefulSet", "wafleet-node");
    let headless = named(&objects, "Service", str_of(nodes, "/spec/serviceName"));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert!(
        nodes["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64() >= Some(30)
    );
    assert!(
        of_kind(&objects, "PodDisruptionBudget")
            .iter()
            .any(|b| selects(
                &b["spec"]["selector"]["matchLabels"],
                &nodes["spec"]["template"]["metadata"]["labels"]
            ) && b["spec"]["maxUnavailable"] == 1)
    );
    let gateway = named(&objects, "Deployment", "wafleet-gateway");
    assert_eq!(
        gateway["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
}

#[test]
fn kubernetes_configs_load_with_each_pod_s_environment() {
    let objects = manifests();
    let secrets: HashMap<&str, &str> = [
        ("cookie", "0123456789abcdef0123456789abcdef"),
        ("admin-key", "an-admin-key"),
        ("master-key", "d2FmbGVldC1jb21wb3NlLWRldi1tYXN0ZXIta2V5ISE="),
    ]
    .into();
    let namespace = "wafleet";
    let statefulset = named(&objects, "StatefulSet", "wafleet-node");
    let set = str_of(statefulset, "/metadata/name");
    let service = str_of(statefulset, "/spec/serviceName");
    let replicas = statefulset["spec"]["replicas"].as_u64().unwrap();
    let dns = |i: u64| format!("{set}-{i}.{service}.{namespace}.svc.cluster.local");
    let pod = &statefulset["spec"]["template"];
    let node_container = &pod["spec"]["containers"][0];
    let cluster_port = container_port(node_container, "cluster");
    let http_port = container_port(node_container, "http");

    // The seeds come from the container's shell script: the first pods but this one.
    let script = str_of(node_container, "/args/0");
    assert!(script.contains(&format!(
        "{set}-$i.{service}.{namespace}.svc.cluster.local:{cluster_port}"
    )));
    assert!(script.contains("exec /usr/local/bin/wafleet node --config"));
    for ordinal in 0..replicas {
        let pod_name = format!("{set}-{ordinal}");
        let mut env = pod_env(node_container, &pod_name, &secrets);
        let seeds: Vec<String> = (0..3)
            .filter(|i| *i != ordinal)
            .map(|i| format!("{}:{cluster_port}", dns(i)))
            .collect();
        env.insert("WAFLEET__NODE__SEEDS".into(), seeds.join(","));
        assert_master_key(&env["WAFLEET_MASTER_KEY"], &pod_name);
        let Loaded::Node(node) = load_config(
            "node",
            &mounted_config(&objects, &pod["spec"], node_container),
            &env,
        ) else {
            unreachable!()
        };
        assert_eq!(node.node.name, pod_name);
        assert!(
            node.store
                .master_key_source(env.contains_key("WAFLEET_MASTER_KEY"))
                .is_ok(),
            "{pod_name} has no master key"
        );
        assert_eq!(node.node.advertised_host(), dns(ordinal));
        assert_eq!(node.node.cluster_listen.port(), cluster_port);
        assert_eq!(node.node.http_listen.port(), http_port);
        let (sim_host, sim_port) = url_host_port(node.link.sim_url.as_deref().unwrap());
        let sim = named(&objects, "Service", "wafleet-sim");
        assert_eq!(
            sim_host,
            format!("wafleet-sim.{namespace}.svc.cluster.local")
        );
        assert!(
            array(sim, "/spec/ports")
                .iter()
                .any(|p| p["port"] == sim_port)
        );
        let sim_args = &named(&objects, "Deployment", "wafleet-sim")["spec"]["template"]["spec"]["containers"]
            [0]["args"];
        let sim_args: Vec<String> = sim_args
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(host_port(flag(&sim_args, "--listen").unwrap()).1, sim_port);
    }

    let deployment = named(&objects, "Deployment", "wafleet-gateway");
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let env = pod_env(container, "wafleet-gateway-7d9c6-x2k4p", &secrets);
    assert!(!env["WAFLEET_ADMIN_KEY"].is_empty());
    // It opens the message texts and event payloads the nodes seal.
    assert_master_key(&env["WAFLEET_MASTER_KEY"], "wafleet-gateway");
    let Loaded::Gateway(gateway) = load_config(
        "gateway",
        &mounted_config(&objects, &pod["spec"], container),
        &env,
    ) else {
        unreachable!()
    };
    assert_eq!(gateway.gateway.name, "wafleet-gateway-7d9c6-x2k4p");
    assert_eq!(
        gateway.gateway.listen.port(),
        container_port(container, "http")
    );
    // The gateway advertises its pod IP (a Deployment's pods have no stable DNS name),
    // on a port the container declares.
    assert_eq!(gateway.gateway.advertised_host(), POD_IP);
    // Prometheus scrapes the port /metrics is served on: metrics_listen's when set
    // (the API's listener no longer serves it), else the API's.
    let metrics_port = gateway
        .gateway
        .metrics_listen
        .unwrap_or(gateway.gateway.listen)
        .port();
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/port"],
        metrics_port.to_string(),
        "the gateway is scraped where it serves /metrics"
    );
    assert!(
        array(container, "/ports")
            .iter()
            .any(|p| p["containerPort"] == metrics_port),
        "the gateway's metrics port is no container port"
    );
    assert_eq!(
        gateway.gateway.cluster_listen.port(),
        container_port(container, "cluster")
    );
    for seed in &gateway.gateway.seeds {
        assert!(
            (0..replicas).any(|i| *seed == format!("{}:{cluster_port}", dns(i))),
            "gateway seed {seed} is no node pod"
        );
    }
    let node_config = mounted_config(
        &objects,
        &statefulset["spec"]["template"]["spec"],
        node_container,
    );
    let Loaded::Node(node) = load_config(
        "node",
        &node_config,
        &pod_env(node_container, "wafleet-node-0", &secrets),
    ) else {
        unreachable!()
    };
    assert_eq!(gateway.cluster, node.cluster, "one [cluster] section");
    assert_eq!(gateway.store, node.store);
    assert_eq!(gateway.redis, node.redis);
}

#[test]
fn kubectl_kustomize_builds_the_manifests() {
    let Some(kubectl) = on_path("kubectl") else {
        eprintln!("kubectl not on the PATH: skipped kubectl kustomize deploy/kubernetes");
        return;
    };
    let out = run(&kubectl, &["kustomize", MANIFESTS], &repo());
    for kind in [
        "StatefulSet",
        "Deployment",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
    ] {
        assert!(
            out.contains(&format!("kind: {kind}")),
            "no {kind} in the build"
        );
    }
}

// ---------- Dockerfile ----------

#[test]
fn the_dockerfile_builds_the_one_binary_and_runs_it_as_pid_one() {
    let dockerfile = read("deploy/Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked --bin wafleet"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/wafleet\"]"));
    assert_eq!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count(),
        2,
        "two stages: build, then a slim runtime"
    );
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l == "target"),
        "the context leaves target/ out"
    );
}

#[test]
fn docker_compose_accepts_the_compose_file() {
    let Some(compose) = tool(
        "docker-compose",
        "docker-compose config",
        "Debian: apt-get install docker-compose",
    ) else {
        return;
    };
    run(
        &compose,
        &["-f", "docker-compose.yml", "config", "-q"],
        &repo(),
    );
    let services = run(
        &compose,
        &["-f", "docker-compose.yml", "config", "--services"],
        &repo(),
    );
    for service in [
        "scylla",
        "redis",
        "sim",
        "node-1",
        "node-2",
        "node-3",
        "gateway",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.lines().any(|line| line.trim() == service),
            "docker-compose config lists no {service}: {services}"
        );
    }
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schema() {
    let Some(validate) = tool(
        "kubernetes-validate",
        "the schema check of the Kubernetes manifests",
        "PyPI: pip install kubernetes-validate",
    ) else {
        return;
    };
    let dir = repo().join(MANIFESTS);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let mut args = vec!["--strict", "--quiet"];
    args.extend(files.iter().map(String::as_str));
    run(&validate, &args, &dir);
    // The build kustomize makes of them (namespace and labels applied) too.
    if let Some(kubectl) = on_path("kubectl") {
        let built = run(&kubectl, &["kustomize", MANIFESTS], &repo());
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("built.yaml");
        std::fs::write(&path, built).unwrap();
        run(
            &validate,
            &["--strict", "--quiet", path.to_str().unwrap()],
            tmp.path(),
        );
    }
}

#[test]
fn the_schema_check_refuses_a_broken_manifest() {
    // The validator is only worth running if it refuses what the API server would.
    let Some(validate) = on_path("kubernetes-validate") else {
        return;
    };
    let node = read(&format!("{MANIFESTS}/node.yaml"));
    assert!(
        node.contains("replicas: 3"),
        "node.yaml changed: adjust this test"
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("node.yaml");
    std::fs::write(&path, node.replacen("replicas: 3", "replicas: three", 1)).unwrap();
    let status = Command::new(validate)
        .args(["--strict", "--quiet", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        !status.status.success(),
        "a string replica count passed the schema check"
    );
}

// ---------- cluster TLS ----------

/// The directory and file name of a `[cluster.tls]` path.
fn split_path(path: &Path) -> (String, String) {
    (
        path.parent().unwrap().display().to_string(),
        path.file_name().unwrap().to_string_lossy().into_owned(),
    )
}

/// The `[cluster.tls]` files of a loaded config, required and all in one directory:
/// returns that directory.
fn tls_dir(cluster: &wafleet_cluster_config::ClusterSettings, whose: &str) -> String {
    let tls = &cluster.tls;
    assert!(tls.required, "{whose}: cluster.tls.required is not set");
    let files = tls
        .files()
        .unwrap_or_else(|| panic!("{whose}: no [cluster.tls] files"));
    let (dir, cert) = split_path(files.cert);
    let (key_dir, key) = split_path(files.key);
    let (ca_dir, ca) = split_path(files.ca);
    assert!(dir == key_dir && dir == ca_dir, "{whose}: one directory");
    // The names cert-manager's Secrets and make-cluster-certs.sh both use.
    assert_eq!(
        [cert.as_str(), key.as_str(), ca.as_str()],
        ["tls.crt", "tls.key", "ca.crt"],
        "{whose}"
    );
    dir
}

/// kubernetes-validate has no schema for cert-manager's kinds (it warns and passes
/// them), so their objects are checked here: known fields, issuers that exist, a
/// complete CA chain, and a certificate whose Secret is mounted where every pod's
/// `[cluster.tls]` files are, naming the configs' server name, usable both ways.
#[test]
fn kubernetes_cluster_tls_comes_from_cert_manager_and_matches_the_configs() {
    let objects = manifests();
    let issuers = of_kind(&objects, "Issuer");
    let certificates = of_kind(&objects, "Certificate");
    assert!(!issuers.is_empty() && !certificates.is_empty());
    let known = |object: &Value, fields: &[&str]| {
        for key in object["spec"].as_object().unwrap().keys() {
            assert!(
                fields.contains(&key.as_str()),
                "{} {}: unknown spec field {key}",
                object["kind"],
                object["metadata"]["name"]
            );
        }
    };
    for object in issuers.iter().chain(&certificates) {
        assert_eq!(object["apiVersion"], "cert-manager.io/v1");
    }
    for issuer in &issuers {
        known(issuer, &["selfSigned", "ca"]);
        if let Some(secret) = issuer.pointer("/spec/ca/secretName") {
            let ca = certificates
                .iter()
                .find(|c| c["spec"]["secretName"] == *secret)
                .unwrap_or_else(|| panic!("no Certificate makes the CA Secret {secret}"));
            assert_eq!(ca["spec"]["isCA"], true, "{secret} is not a CA");
        }
    }
    for certificate in &certificates {
        known(
            certificate,
            &[
                "secretName",
                "commonName",
                "dnsNames",
                "usages",
                "duration",
                "renewBefore",
                "privateKey",
                "issuerRef",
                "isCA",
            ],
        );
        let issuer = &certificate["spec"]["issuerRef"];
        assert_eq!(issuer["kind"], "Issuer");
        assert_eq!(issuer["group"], "cert-manager.io");
        named(&objects, "Issuer", str_of(issuer, "/name"));
    }

    let secrets: HashMap<&str, &str> = [
        ("cookie", "0123456789abcdef0123456789abcdef"),
        ("admin-key", "an-admin-key"),
        ("master-key", "d2FmbGVldC1jb21wb3NlLWRldi1tYXN0ZXIta2V5ISE="),
    ]
    .into();
    for (kind, name, config_kind, pod_name) in [
        ("StatefulSet", "wafleet-node", "node", "wafleet-node-0"),
        (
            "Deployment",
            "wafleet-gateway",
            "gateway",
            "wafleet-gateway-7d9c6-x2k4p",
        ),
    ] {
        let workload = named(&objects, kind, name);
        let pod = &workload["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let config = mounted_config(&objects, pod, container);
        let cluster = match load_config(
            config_kind,
            &config,
            &pod_env(container, pod_name, &secrets),
        ) {
            Loaded::Node(node) => node.cluster,
            Loaded::Gateway(gateway) => gateway.cluster,
        };
        let dir = tls_dir(&cluster, name);
        let mount = array(container, "/volumeMounts")
            .iter()
            .find(|m| m["mountPath"] == dir.as_str())
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {dir}"));
        let volume = array(pod, "/volumes")
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let secret = str_of(volume, "/secret/secretName");
        let certificate = certificates
            .iter()
            .find(|c| c["spec"]["secretName"] == secret)
            .unwrap_or_else(|| panic!("{name}: no Certificate makes the Secret {secret}"));
        assert!(
            array(certificate, "/spec/dnsNames")
                .iter()
                .any(|n| n == cluster.tls.server_name.as_str()),
            "{name}: the certificate does not name {}",
            cluster.tls.server_name
        );
        let usages = array(certificate, "/spec/usages");
        for usage in ["server auth", "client auth"] {
            assert!(usages.iter().any(|u| u == usage), "{name}: no {usage}");
        }
        assert_ne!(certificate["spec"]["isCA"], true);
        // The process runs as a non-root user: it must be able to read the key.
        let mode = volume["secret"]["defaultMode"].as_u64().unwrap();
        assert_eq!(pod["securityContext"]["fsGroup"], 10001, "{name}: fsGroup");
        assert_eq!(mode & 0o040, 0o040, "{name}: the group cannot read the key");
        assert_eq!(mode & 0o007, 0, "{name}: others can read the key");
    }
}

#[test]
fn compose_cluster_tls_files_come_from_the_one_shot_service() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().unwrap();
    let volumes = compose["volumes"].as_object().expect("named volumes");
    let makers: Vec<(&String, &Value)> = services
        .iter()
        .filter(|(_, s)| {
            s["command"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|a| a.as_str().unwrap().ends_with("make-cluster-certs.sh"))
            })
        })
        .collect();
    assert_eq!(makers.len(), 1, "one service makes the certificates");
    let (maker_name, maker) = makers[0];
    let script_in_container = command(maker)
        .into_iter()
        .find(|a| a.ends_with("make-cluster-certs.sh"))
        .unwrap();
    assert_eq!(
        bind_mounts(maker)
            .get(&script_in_container)
            .map(String::as_str),
        Some("./deploy/compose/make-cluster-certs.sh")
    );
    let out_dir = command(maker).last().unwrap().clone();
    let named_mounts = |service: &Value| -> BTreeMap<String, String> {
        service["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                let parts: Vec<&str> = v.as_str().unwrap().split(':').collect();
                (!parts[0].starts_with("./")).then(|| (parts[1].to_owned(), parts[0].to_owned()))
            })
            .collect()
    };
    let volume = named_mounts(maker)
        .get(&out_dir)
        .cloned()
        .expect("the certificates go into a named volume");
    assert!(volumes.contains_key(&volume));

    let mut checked = 0;
    for (name, service) in services {
        if str_of(service, "/image") != "wafleet:local" {
            continue;
        }
        let args = command(service);
        if args[0] == "sim" {
            continue;
        }
        let config = flag(&args, "--config").unwrap();
        let source = bind_mounts(service)[config].clone();
        let cluster = match load_config(&args[0], &read(&source), &environment(service)) {
            Loaded::Node(node) => node.cluster,
            Loaded::Gateway(gateway) => gateway.cluster,
        };
        let dir = tls_dir(&cluster, name);
        assert_eq!(
            named_mounts(service).get(&dir),
            Some(&volume),
            "{name}: {dir} is not the certificates' volume"
        );
        assert_eq!(
            service["depends_on"][maker_name.as_str()]["condition"],
            "service_completed_successfully",
            "{name} may start before its certificates exist"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "three nodes and a gateway");
}

/// The compose script's certificates (openssl-made) load as a node loads them: the
/// chain, the name and both usages are what rustls and webpki ask for. Run twice, it
/// keeps what it made.
#[test]
fn the_compose_certificate_script_makes_certificates_a_node_accepts() {
    let Some(openssl) = tool(
        "openssl",
        "the compose certificate script",
        "Debian: apt-get install openssl",
    ) else {
        return;
    };
    assert!(openssl.is_file());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let script = repo().join("deploy/compose/make-cluster-certs.sh");
    let make = || {
        let output = Command::new("sh")
            .arg(&script)
            .arg(&out)
            .env("WAFLEET_TLS_OWNER", "")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    assert!(make().contains("written"));
    let first = std::fs::read(out.join("tls.crt")).unwrap();
    assert!(make().contains("already"));
    assert_eq!(std::fs::read(out.join("tls.crt")).unwrap(), first);
    let (cert, key, ca) = (out.join("tls.crt"), out.join("tls.key"), out.join("ca.crt"));
    wafleet_node::cluster::tls::ClusterTls::load(&wafleet_cluster_config::TlsFiles {
        cert: &cert,
        key: &key,
        ca: &ca,
        server_name: "wafleet-cluster",
    })
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the key is readable by others: {mode:o}");
}
