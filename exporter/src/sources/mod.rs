//! One module per source, all of the same shape: config -> struct -> collect -> pure
//! conversion to a [`crate::snapshot`] -> tests.

pub mod dummy;
pub mod libvirt;
pub mod openstack;
pub mod portal;
pub mod start_date;
pub mod weights;
