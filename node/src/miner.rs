//! The miner. (In progress.)
