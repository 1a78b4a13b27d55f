//! Shared by the sync test suites.
#![allow(dead_code)]

pub mod model;
