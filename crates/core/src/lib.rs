//! Primitives every yunnao crate shares. Nothing here knows about SQL, and HTTP appears only
//! behind the `axum` feature (the conversion of [`Problem`] into a response).

pub mod problem;
#[cfg(any(feature = "tables", test))]
pub mod tables;
pub mod time;

pub use problem::Problem;

/// A new time-ordered unique id (UUID v7), as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
