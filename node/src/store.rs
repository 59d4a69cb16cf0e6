//! The RocksDB schema. (In progress.)
