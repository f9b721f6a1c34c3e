//! The public services hub (一网通办). So far: the service catalogue as seeded data with its
//! rules (`catalogue`), and the identifiers every later part checks before it trusts them: the
//! resident identity number, the unified social credit code and the e-licence identifier's
//! check character (`ids`). The e-licence library (`licences`): holders bound to their numbers, licences sealed by their issuer, public and offline verification, status changes. Applications (`applications`): licence-covered materials taken from the library, acceptance or return, stages of parallel steps decided by their mode. Policies (`policies`): JSON eligibility rules over enterprise data with explanations, their own test cases, budget-bounded runs over a synthetic set of enterprises; their grants' ledger and the pages are to come.

pub mod api;
pub mod applications;
pub mod catalogue;
pub mod ids;
pub mod licences;
mod migrations;
pub mod policies;

pub use migrations::MIGRATIONS;
