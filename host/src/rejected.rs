//! Entries of `incoming/` the host will never take (symbolic links, see
//! [`deliver_watch::RejectReason`]): each is claimed into
//! `processing/<job>/` (the link itself, by rename; it is never followed)
//! and finished as failed with an input error that names it and says why,
//! so that the sender learns what happened instead of watching the file sit
//! in `incoming/` forever.

use crate::host::{finish, verdict_str, Shared};
use crate::jobs::{self, JobError};
use crate::journal::State;
use crate::manifest::InputError;
use crate::plugins::Registry;
use crate::report::{self, Verdict};
use deliver_watch::{JobId, RejectReason, Rejected};
use std::path::{Path, PathBuf};

/// Quarantines one rejected entry of `incoming/` with its report; returns
/// its folder in `failed/`, or `None` if it could not be moved there (the
/// reason is logged).
pub(crate) fn quarantine(shared: &Shared, reg: &Registry, rejected: &Rejected) -> Option<PathBuf> {
    let started = report::now();
    let file = &rejected.path;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = JobId::new(&stem);
    // `claim` renames the entry; a rename never follows a link.
    let claimed = match shared.root.claim(file, &id) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot claim the rejected {}: {e}", file.display());
            return None;
        }
    };
    let sidecar = deliver_watch::ready_sidecar(file);
    if sidecar.exists() {
        if let Err(e) = std::fs::remove_file(&sidecar) {
            tracing::warn!("cannot remove {}: {e}", sidecar.display());
        }
    }
    shared.journal_claimed(&id, file, &claimed, 0);
    let err = input_error(shared, rejected);
    tracing::warn!(job = %id, "{err}");
    let report = jobs::error_report(id.as_str(), file, reg, &JobError::Input(err), &started);
    if let Err(e) = report::write(&report, &shared.root.job_dir(&id)) {
        tracing::error!(job = %id, "cannot write the report: {e}");
    }
    let detail = report.error.as_ref().map(|e| e.kind);
    shared.journal(
        &id,
        State::Finished,
        detail,
        Some(verdict_str(Verdict::Fail)),
    );
    let (_, folder) = finish(shared, &id, Verdict::Fail);
    folder
}

fn input_error(shared: &Shared, rejected: &Rejected) -> InputError {
    let root = shared.root.root();
    let mut message = rejected.reason.to_string();
    if let RejectReason::Symlink {
        resolved: Some(resolved),
        ..
    } = &rejected.reason
    {
        if rejected.leads_outside(root) {
            message.push_str(&format!(
                "; this one does: {} is outside {}",
                resolved.display(),
                root.display()
            ));
        }
    }
    let expected = match &rejected.reason {
        RejectReason::Symlink { .. } => {
            "a regular file (copy or move the manifest itself into incoming/, not a link to it)"
        }
        _ => "a regular file",
    };
    InputError::new(&rejected.path, message).expected(expected)
}

/// The metadata of a claimed manifest, refusing a symbolic link: a job
/// resumed after a crash must not follow a link that a rejection had
/// claimed but not yet quarantined.
///
/// # Errors
/// I/O errors of `lstat` (a manifest gone from `processing/` is named, since
/// the report names the file as it was dropped), and an error naming the
/// link's target for a link.
pub(crate) fn claimed_metadata(path: &Path) -> std::io::Result<std::fs::Metadata> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            std::io::Error::new(
                e.kind(),
                format!(
                    "the claimed manifest {} is gone: it was deleted or moved after it was \
                     claimed ({e})",
                    path.display()
                ),
            )
        } else {
            e
        }
    })?;
    if meta.file_type().is_symlink() {
        let reason = RejectReason::Symlink {
            target: std::fs::read_link(path).unwrap_or_default(),
            resolved: std::fs::canonicalize(path).ok(),
        };
        return Err(std::io::Error::other(reason.to_string()));
    }
    Ok(meta)
}
