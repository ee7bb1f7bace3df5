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
/// A store refused the credentials (401/403), or the queue's database refused a privilege.
pub const DENIED: u8 = 5;
/// A store or the queue's database could not be reached, or kept failing (connection refused,
/// timeouts, 5xx).
pub const UNREACHABLE: u8 = 6;
/// A revision that fails verification, or a bundle refused by safe extraction.
pub const INTEGRITY: u8 = 7;
/// Interrupted (Ctrl-C).
pub const INTERRUPTED: u8 = 130;
/// Stopped by SIGTERM (128 + 15).
pub const TERMINATED: u8 = 143;
/// Stopped by SIGHUP (128 + 1).
pub const HUNG_UP: u8 = 129;

/// The code of a push, pull or list that failed.
pub fn of_store(e: &kiln::store::StoreError) -> u8 {
    use kiln::revision::extract::ExtractError;
    use kiln::store::StoreError;
    match e {
        StoreError::BadRef(_) | StoreError::Usage(_) | StoreError::Exists { .. } => BAD_INPUT,
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

/// The code of a build that could not start or finish (a build that ran and failed is [`FAILED`]).
pub fn of_build(e: &kiln::build::BuildError) -> u8 {
    use kiln::build::BuildError;
    match e {
        BuildError::Spec(_)
        | BuildError::Load(_)
        | BuildError::Secrets(_)
        | BuildError::MissingSecrets(_)
        | BuildError::NoBuildspec(_)
        | BuildError::NoBuildspecAbove { .. }
        | BuildError::Foreign { .. }
        | BuildError::Snapshot(_)
        | BuildError::Confine(_)
        | BuildError::Namespaces(_)
        | BuildError::RunAs { .. }
        | BuildError::Cache(_)
        | BuildError::Shell(_)
        | BuildError::SecondarySource { .. }
        | BuildError::Plugin { .. }
        | BuildError::Output(_) => BAD_INPUT,
        BuildError::Io { .. } | BuildError::Sandbox(_) => INTERNAL,
    }
}

/// The code of a revision that could not be packaged.
pub fn of_revision(e: &kiln::revision::RevisionError) -> u8 {
    use kiln::revision::RevisionError;
    match e {
        RevisionError::NoAppspec(_) | RevisionError::InvalidAppspec(_) => BAD_INPUT,
        RevisionError::Io { .. } => INTERNAL,
    }
}

/// The code of a deployment that could not start or be recorded (one that ran and failed is
/// [`FAILED`]).
pub fn of_deploy(e: &kiln::deploy::DeployError) -> u8 {
    use kiln::deploy::DeployError;
    match e {
        DeployError::NoRevision(_)
        | DeployError::Usage(_)
        | DeployError::Unsupported(_)
        | DeployError::AppSpec(_) => BAD_INPUT,
        DeployError::Hook { .. } | DeployError::Install(_) | DeployError::Download(_) => FAILED,
        DeployError::Io { .. } | DeployError::Engine(_) => INTERNAL,
    }
}

/// The code of `kiln plugin run` when the step could not run.
pub fn of_step(e: &kiln::sandbox::StepError) -> u8 {
    use kiln::sandbox::StepError;
    match e {
        StepError::UnknownPlugin(_) | StepError::Load { .. } => BAD_INPUT,
        StepError::Timeout { .. } | StepError::Memory { .. } | StepError::Trap { .. } => FAILED,
        StepError::Preopen { .. } => INTERNAL,
    }
}

/// The code of a queue command that failed.
pub fn of_queue(e: &kiln::worker::queue::QueueError) -> u8 {
    use kiln::worker::queue::QueueError;
    match e {
        QueueError::BadUrl(_) | QueueError::NotRetryable { .. } => BAD_INPUT,
        QueueError::NotFound(_) => NOT_FOUND,
        QueueError::Denied(_) => DENIED,
        QueueError::Unreachable { .. } => UNREACHABLE,
        QueueError::NoSchema { .. }
        | QueueError::SchemaTooOld { .. }
        | QueueError::SchemaTooNew { .. }
        | QueueError::LeaseLost(_)
        | QueueError::LogGap { .. }
        | QueueError::ChunkTooLarge(_)
        | QueueError::Database(_) => INTERNAL,
    }
}
