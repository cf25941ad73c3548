//! site-exporter
