//! Data-layer failures as job outcomes: worth retrying or not.
use jobs::JobError;

/// A data-layer failure as a job outcome: worth retrying or not.
pub(crate) fn job_error(e: entities::Error) -> JobError {
    if e.is_transient() {
        JobError::Transient(e.to_string())
    } else {
        JobError::Permanent(e.to_string())
    }
}

/// A failure because what the job is about is not recorded yet (a provider callback that
/// overtook its send): retried until it appears, or the attempts run out.
pub(crate) fn retried_until_recorded(e: entities::Error) -> JobError {
    match e {
        entities::Error::NotFound(what) => {
            JobError::Transient(format!("{what} is not recorded (yet)"))
        }
        other => job_error(other),
    }
}
