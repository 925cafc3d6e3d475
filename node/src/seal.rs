//! Sealing secrets at rest: AES-256-GCM under a versioned master key (to be implemented).
