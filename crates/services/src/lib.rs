//! The public services hub (一网通办). So far: the service catalogue as seeded data with its
//! rules (`catalogue`), and the identifiers every later part checks before it trusts them: the
//! resident identity number, the unified social credit code and the e-licence identifier's
//! check character (`ids`). E-licences, applications, policies and the API are to come.

pub mod catalogue;
pub mod ids;
