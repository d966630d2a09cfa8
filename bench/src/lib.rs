//! `fila-bench`: the load-testing harness (binary `fila-bench`) arrives with its own issue;
//! this crate depends only on `fila-wire`, never on the server or the shard.
