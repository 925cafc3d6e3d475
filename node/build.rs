//! Marks the build when `SCYLLA_URI` is set, so that the ScyllaDB conformance test is
//! reported as ignored, with the reason, in every test run that has no ScyllaDB to reach
//! (rather than passing silently).

fn main() {
    println!("cargo::rerun-if-env-changed=SCYLLA_URI");
    println!("cargo::rustc-check-cfg=cfg(scylla_uri)");
    if std::env::var_os("SCYLLA_URI").is_some_and(|uri| !uri.is_empty()) {
        println!("cargo::rustc-cfg=scylla_uri");
    }
}
