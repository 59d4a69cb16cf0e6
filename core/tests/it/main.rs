//! cairn-core's integration tests: consensus rules as a second implementation would
//! meet them.
#![allow(clippy::unwrap_used)] // test fixtures fail loudly

mod block_rules;
mod difficulty_sim;
mod encoding_props;
mod state_rules;
mod support;
mod vectors;
