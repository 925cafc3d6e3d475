//! The production build has no certificate bypass: whatsapp-rust's
//! `danger-skip-cert-chain-verify` (which makes the client accept any server's
//! certificate chain) is on only with `--features test-chain`.
//!
//! A static check of what cargo would build, by `cargo tree` (no network, and never
//! rewriting Cargo.lock: `--offline --locked`):
//! - `-p wafleet`, inverted on `wacore-noise` (where the feature lives): the binary as
//!   `cargo build --release --bin wafleet` makes it, with every path to wacore-noise,
//!   through the root's `[features]` and its dev-dependencies too (the non-inverted tree
//!   does not print a feature the root's own `[features]` turns on);
//! - `--workspace` over normal dependencies: `cargo build --release` of every member,
//!   so no member (a test server in `load-tests/`, say) may switch it on for the others;
//! - and `--features test-chain` does show it, so the check can fail.
//!
//! Skipped in a `test-chain` build, which has the bypass on purpose.

#![cfg(not(feature = "test-chain"))]

use std::process::Command;

const BYPASS: &str = "danger-skip-cert-chain-verify";

/// The output of `cargo tree --offline --locked ARGS` in the workspace.
fn cargo_tree(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("cargo tree prints UTF-8")
}

fn assert_no_bypass(args: &[&str]) {
    let tree = cargo_tree(args);
    assert!(
        tree.contains("wacore-noise"),
        "cargo tree {args:?} does not reach wacore-noise:\n{tree}"
    );
    assert!(
        !tree.contains(BYPASS),
        "cargo tree {args:?} switches on {BYPASS}:\n{tree}"
    );
}

#[test]
fn the_wafleet_binary_has_no_certificate_bypass() {
    assert_no_bypass(&["-e", "features", "-i", "wacore-noise", "-p", "wafleet"]);
}

#[test]
fn no_workspace_member_switches_the_bypass_on() {
    assert_no_bypass(&["-e", "normal,features", "-i", "wacore-noise", "--workspace"]);
}

#[test]
fn the_test_chain_build_has_the_bypass() {
    let tree = cargo_tree(&[
        "-e",
        "features",
        "-i",
        "wacore-noise",
        "-p",
        "wafleet",
        "--features",
        "test-chain",
    ]);
    assert!(
        tree.contains(&format!("wacore-noise feature \"{BYPASS}\""))
            && tree.contains("wafleet-node feature \"test-chain\""),
        "the test-chain build does not switch on {BYPASS}:\n{tree}"
    );
}
