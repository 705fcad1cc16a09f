//! Sentinel's domain: the audit event and its encoding, the ingest and query contracts,
//! months and the archive's manifest and key layout, and the ports (small traits) that the
//! adapters implement. Nothing here performs I/O.

pub mod access;
pub mod archive;
pub mod archive_chain;
pub mod backoff;
pub mod checkpoint;
pub mod event;
pub mod fields;
pub mod identity;
pub mod json;
pub mod log;
pub mod manifest;
pub mod merkle;
pub mod month;
pub mod publish;
pub mod query;
pub mod read;
pub mod store;
pub mod tiles;
pub mod validation;

pub use event::AuditEvent;
pub use month::Month;
