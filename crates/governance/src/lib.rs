//! The governance hub (一网统管): the city grid, incidents and their workflow, dispatch,
//! working-time deadlines with warnings and escalation, Open311 GeoReport v2, and the figures
//! the overview and the plan's supervision read.
//!
//! Owns the tables in [`MIGRATIONS`]. Sensor alarms arrive through [`Governance::report`]
//! from the wiring in the binary (this crate does not know the sensing hub).

pub mod api;
pub mod calendar;
pub mod catalogue;
pub mod deadlines;
pub mod hotline;
pub mod incidents;
mod migrations;
pub mod open311;
pub mod queries;
pub mod workflow;

pub use incidents::{Location, Report, Source};
pub use migrations::MIGRATIONS;
pub use workflow::{Action, State};

use std::sync::{Arc, RwLock};
use std::time::Duration;
use yunnao_bus::Bus;
use yunnao_core::Problem;
use yunnao_identity::Identity;
use yunnao_store::Db;

#[derive(Debug, Clone)]
pub struct GovernanceConfig {
    /// The command centre's department: its operators register, dispatch and close.
    pub centre: String,
    /// H3 resolution of unit grids (10 ≈ 15,000 m²).
    pub grid_resolution: u8,
    /// Register and dispatch located reports at once by the dispatch rules.
    pub auto_dispatch: bool,
    /// How often deadlines are checked for warnings and escalation.
    pub scan_every: Duration,
    /// Radius within which open incidents of a subclass are offered for merging.
    pub merge_radius_m: f64,
    /// Working day, minutes after midnight CST.
    pub work_day: (u32, u32),
    /// Open311 jurisdiction id (the city's statistical code).
    pub jurisdiction: String,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        Self {
            centre: "city-management".into(),
            grid_resolution: 10,
            auto_dispatch: true,
            scan_every: Duration::from_secs(30),
            merge_radius_m: 150.0,
            work_day: (9 * 60, 17 * 60),
            jurisdiction: "370200".into(),
        }
    }
}

/// The governance service: cheap to clone, passed to handlers as state.
#[derive(Clone)]
pub struct Governance {
    pub db: Db,
    pub bus: Bus,
    pub identity: Identity,
    pub grid: Arc<yunnao_city::CityGrid>,
    pub config: GovernanceConfig,
    assignments: Arc<RwLock<catalogue::Assignments>>,
    contacts: Arc<yunnao_gm::FieldCipher>,
}

impl Governance {
    /// Builds the grid (a few seconds at resolution 10), seeds the categories, loads grid
    /// workers' assignments and starts the deadline scan.
    pub async fn start(
        db: Db,
        bus: Bus,
        identity: Identity,
        config: GovernanceConfig,
    ) -> Result<Self, Problem> {
        let resolution = config.grid_resolution;
        let started = std::time::Instant::now();
        let grid = tokio::task::spawn_blocking(move || yunnao_city::CityGrid::build(resolution))
            .await
            .map_err(|e| Problem::internal(e.to_string()))?
            .map_err(Problem::internal)?;
        tracing::info!(
            grids = grid.len(),
            resolution,
            ms = started.elapsed().as_millis() as u64,
            "city grid built"
        );
        let contacts = Arc::new(identity.field_cipher("governance-contact"));
        let governance = Self {
            db,
            bus,
            identity,
            grid: Arc::new(grid),
            config,
            assignments: Arc::default(),
            contacts,
        };
        governance.seed_categories().await?;
        governance.reload_assignments().await?;
        deadlines::spawn(governance.clone());
        Ok(governance)
    }
}

impl Governance {
    /// Department code → Chinese name, for answers people read (Open311, figures).
    pub(crate) async fn department_names(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, Problem> {
        Ok(self
            .identity
            .departments()
            .await?
            .into_iter()
            .map(|d| (d.code, d.name_zh))
            .collect())
    }
}

pub(crate) fn json(value: &impl serde::Serialize) -> Result<String, Problem> {
    serde_json::to_string(value).map_err(|e| Problem::internal(e.to_string()))
}
