//! The OpenStack source: per-project usage from Keystone and Nova.
//!
//! - [`nova`]: Nova API JSON and its pure conversion.
//! - [`accounting`]: running totals from contiguous usage windows, per-server records.

pub mod accounting;
pub mod nova;
