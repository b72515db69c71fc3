//! Spec checks of a delivered file against its QC profile.
