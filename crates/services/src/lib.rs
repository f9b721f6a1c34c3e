//! The public services hub (一网通办): the service catalogue and its versions (`catalogue`,
//! `versions`), identifiers with their check characters (`ids`), the e-licence library
//! (`licences`), uploads (`uploads`), applications with parallel approval, deadlines and
//! results (`applications`), the message centre (`messages`), policies without application
//! and their grants ledger (`policies`, `grants`), the bureau's figures (`figures`), and the
//! HTTP API under `/api/v1/services` (`api`).

pub mod api;
pub mod applications;
pub mod catalogue;
pub mod figures;
pub mod grants;
pub mod ids;
pub mod licences;
pub mod messages;
mod migrations;
pub mod policies;
pub mod uploads;
pub mod versions;

pub use migrations::MIGRATIONS;
