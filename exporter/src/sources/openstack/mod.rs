//! The OpenStack source: per-project usage from Keystone and Nova.
//!
//! - [`nova`]: Nova API JSON and its pure conversion.
//! - [`accounting`]: running totals from contiguous usage windows, per-server records.
//! - [`state`]: the state file (atomic writes, untrusted files set aside).
//! - [`keystone`]: projects and domains, filters.

pub mod accounting;
pub mod keystone;
pub mod nova;
pub mod state;
