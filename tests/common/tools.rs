//! Programs the tests drive (promtool, Chromium, node ...): found on the PATH, or the
//! test is skipped, unless `WAFLEET_REQUIRE_TOOLS` is set (CI), which makes a missing one
//! fail it.

use std::path::PathBuf;

/// Where `program` is on the PATH; `None` (after saying the check skipped `what`) if it
/// is not. With `WAFLEET_REQUIRE_TOOLS` set, a missing program fails the test instead.
pub fn tool(program: &str, what: &str, install: &str) -> Option<PathBuf> {
    let found = on_path(program);
    if found.is_none() {
        assert!(
            std::env::var_os("WAFLEET_REQUIRE_TOOLS").is_none(),
            "{program} is required (WAFLEET_REQUIRE_TOOLS is set) but not on the PATH ({install})"
        );
        eprintln!("{program} not on the PATH: skipped {what} ({install})");
    }
    found
}

/// Where `program` is on the PATH, if it is.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}
