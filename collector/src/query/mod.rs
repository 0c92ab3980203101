//! Named read queries over what is stored, for the report and the read API. Tenant data is read
//! only through a `store::TenantTx`, so row-level security applies to every query here.

pub mod csv;
pub mod metrics;
pub mod peaks;
pub mod period;
pub mod recommend;
pub mod savings;
pub mod summary;
