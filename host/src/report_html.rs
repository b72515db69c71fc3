//! The self-contained HTML compliance report.
