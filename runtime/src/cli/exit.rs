//! Exit codes scripts can rely on, and which library errors give which code.

/// The build (or command) succeeded.
pub const OK: u8 = 0;
/// The build ran and failed.
pub const FAILED: u8 = 1;
/// Bad input or usage: a spec with errors, a missing file, a bad flag.
pub const BAD_INPUT: u8 = 2;
/// kiln itself could not do its work (engine, sandbox, disk).
pub const INTERNAL: u8 = 3;
/// A revision or store that does not exist.
pub const NOT_FOUND: u8 = 4;
/// A store refused the credentials (401/403).
pub const DENIED: u8 = 5;
/// A store could not be reached, or kept failing (connection refused, timeouts, 5xx).
pub const UNREACHABLE: u8 = 6;
/// A revision that fails verification, or a bundle refused by safe extraction.
pub const INTEGRITY: u8 = 7;
/// Interrupted (Ctrl-C).
pub const INTERRUPTED: u8 = 130;

/// The code of a push, pull or list that failed.
pub fn of_store(e: &kiln::store::StoreError) -> u8 {
    use kiln::revision::extract::ExtractError;
    use kiln::store::StoreError;
    match e {
        StoreError::BadRef(_) | StoreError::Usage(_) => BAD_INPUT,
        StoreError::NotFound(_) => NOT_FOUND,
        StoreError::Denied { .. } => DENIED,
        StoreError::Unreachable { .. } => UNREACHABLE,
        StoreError::Remote { .. } => INTERNAL,
        StoreError::Extract(ExtractError::Io { .. }) => INTERNAL,
        StoreError::Extract(ExtractError::Interrupted) => INTERRUPTED,
        StoreError::Mismatch { .. } | StoreError::Extract(_) => INTEGRITY,
        StoreError::Io { .. } => INTERNAL,
    }
}
