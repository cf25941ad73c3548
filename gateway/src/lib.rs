//! `federation-gateway`: lets a portal read only the allowed `/federate` selectors of a site
//! Prometheus.

#![forbid(unsafe_code)]

pub mod selectors;
