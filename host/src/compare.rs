//! `deliver compare`: quality metrics between any two media files.
