//! The JSON-RPC server. (In progress.)
