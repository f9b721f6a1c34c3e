//! The city's geography, shared by every hub that places things: Qingdao's divisions with
//! their detailed boundaries ([`divisions`]), its metro ([`metro`]), and the unit grid of H3
//! cells over the districts with point → grid lookup ([`grid`]). Pure data and computation:
//! no database, no HTTP.

pub mod divisions;
pub mod grid;
pub mod metro;

pub use divisions::{ATTRIBUTION, Community, District, Street, districts};
pub use grid::{CityGrid, DistrictCells, DistrictCoverage, GridRef, LevelCoverage};
