//! The AgentTally collector: HTTP ingest into PostgreSQL and the query API dashboards use.
//! The binary in `main.rs` is a thin command-line front over this library.
