//! cairn-sim: Cairn's network at scale, in simulation.
//!
//! The real peer protocol ([`cairn_node::p2p::protocol::Protocol`]) over real nodes
//! ([`cairn_node::node::Node`], each with its own in-memory chain and mempool), joined by
//! simulated links ([`model`]) and driven by a discrete-event engine ([`engine`]). The
//! [`scenario`]s measure block and transfer propagation, fork rate, partitions and
//! churn, and write tables, JSON and SVG charts ([`svg`]). See docs/SCALE.md.

pub mod engine;
pub mod model;
pub mod scenario;
pub mod share;
pub mod svg;
