//! Wiring: the one place that knows every crate. Builds the database, bus, keys and services
//! from a [`Config`], assembles the routers and applies the edge.

pub mod config;
pub mod context_link;
pub mod contract;
pub mod data_link;
pub mod governance_link;
mod platform;

pub use config::{Config, Overrides};

use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use yunnao_bus::Bus;
use yunnao_http::{EdgeConfig, Metrics};
use yunnao_identity::{Identity, IdentityConfig, PlatformKeys};
use yunnao_store::{Db, MigrationSet, migrate};

/// Every crate's migrations, in dependency order.
pub const MIGRATIONS: &[MigrationSet] = &[
    yunnao_identity::MIGRATIONS,
    yunnao_sensing::MIGRATIONS,
    yunnao_context::MIGRATIONS,
    yunnao_governance::MIGRATIONS,
    yunnao_plan::MIGRATIONS,
    yunnao_services::MIGRATIONS,
    yunnao_codes::MIGRATIONS,
    yunnao_data::MIGRATIONS,
];

pub struct App {
    pub router: Router,
    /// The document as the handlers declare it (`/openapi.json` serves it completed with the
    /// edge's answers).
    pub openapi: utoipa::openapi::OpenApi,
    pub db: Db,
    pub bus: Bus,
    pub identity: Identity,
    pub sensing: yunnao_sensing::Sensing,
    pub context: yunnao_context::ContextBroker,
    pub governance: yunnao_governance::Governance,
    pub plan: yunnao_plan::Plan,
    pub services: yunnao_services::api::ServicesState,
    pub web: yunnao_web::Web,
    /// Messages taken from the external broker, when one is configured.
    pub external_mqtt: Option<Arc<std::sync::atomic::AtomicU64>>,
    pub metrics: Metrics,
    pub seed: yunnao_identity::SeedReport,
    pub serve: yunnao_http::ServeConfig,
    pub mqtt_max_connections: usize,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "yunnao 雲腦 city platform API", description = "Every error is RFC 9457 application/problem+json."),
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("api_key" = [])),
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// The document as served: with the edge's answers added ([`contract::complete`]).
fn served_document(openapi: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut document = serde_json::to_value(openapi).unwrap_or_default();
    contract::complete(&mut document);
    document
}

pub async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.db_url()).await?;
    migrate::run(&db, MIGRATIONS).await?;
    Ok(db)
}

/// Builds the whole application: connects, migrates, seeds, assembles routes.
pub async fn build(config: &Config) -> anyhow::Result<App> {
    let db = open_db(config).await?;
    let bus = Bus::from_url(&config.bus)?;
    let keys =
        PlatformKeys::load_or_create(&config.platform_key_path()).map_err(anyhow::Error::msg)?;
    let identity = Identity::new(
        db.clone(),
        bus.clone(),
        keys,
        IdentityConfig {
            token_ttl_secs: config.token_ttl_secs,
            ..IdentityConfig::default()
        },
    );
    let seed = identity
        .seed(config.admin_password.as_deref())
        .await
        .map_err(|p| anyhow::anyhow!("seeding failed: {p}"))?;
    // Signs what a crash left unsigned at once, then any head left unsigned every 5 s.
    identity.spawn_checkpointer();
    let sensing = yunnao_sensing::Sensing::start(
        db.clone(),
        bus.clone(),
        identity.clone(),
        yunnao_sensing::SensingConfig {
            no_data_check: std::time::Duration::from_millis(config.no_data_check_ms.max(10)),
            ..yunnao_sensing::SensingConfig::default()
        },
    )
    .await
    .map_err(|p| anyhow::anyhow!("sensing hub: {p}"))?;
    let external_mqtt = if config.mqtt.is_empty() {
        None
    } else {
        Some(
            yunnao_sensing::mqtt_external::start(
                sensing.clone(),
                yunnao_sensing::mqtt_external::ExternalMqtt {
                    url: config.mqtt.clone(),
                    client_id: config.mqtt_client_id.clone(),
                    topic_prefix: config.mqtt_topic_prefix.clone(),
                    group: "yunnao".into(),
                },
            )
            .map_err(anyhow::Error::msg)?,
        )
    };
    let metrics = Metrics::new();
    if !config.ngsi_ld_auth {
        tracing::warn!(
            "NGSI-LD AUTHENTICATION IS OFF: anyone who reaches /ngsi-ld/v1 reads and writes every entity; \
             run like this only behind a policy-enforcement proxy or for a conformance suite"
        );
    }
    let context = yunnao_context::ContextBroker::start(
        db.clone(),
        identity.clone(),
        yunnao_context::ContextConfig {
            auth: config.ngsi_ld_auth,
            context_allow: config
                .ngsi_ld_context_allow
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            entity_cache_bytes: config.ngsi_ld_cache_mib << 20,
            ..yunnao_context::ContextConfig::default()
        },
    )
    .await
    .map_err(|p| anyhow::anyhow!("context broker: {p}"))?;
    let added = if config.ngsi_ld_city_objects {
        context
            .load_city_objects()
            .await
            .map_err(|p| anyhow::anyhow!("city objects: {p}"))?
    } else {
        0
    };
    if added > 0 {
        tracing::info!(
            added,
            "loaded Qingdao districts and metro stations as open data"
        );
    }
    context_link::spawn(
        sensing.clone(),
        context.clone(),
        std::time::Duration::from_millis(config.context_mirror_ms.max(10)),
        config.context_mirror_per_round.max(1),
    );

    let governance = yunnao_governance::Governance::start(
        db.clone(),
        bus.clone(),
        identity.clone(),
        yunnao_governance::GovernanceConfig {
            centre: config.governance_centre.clone(),
            grid_resolution: config.grid_resolution,
            auto_dispatch: config.auto_dispatch,
            scan_every: std::time::Duration::from_millis(config.governance_scan_ms.max(10)),
            ..yunnao_governance::GovernanceConfig::default()
        },
    )
    .await
    .map_err(|p| anyhow::anyhow!("governance hub: {p}"))?;
    governance_link::spawn(&bus, sensing.clone(), governance.clone())?;
    let services = yunnao_services::api::ServicesState::start(
        db.clone(),
        identity.clone(),
        governance.clone(),
        std::time::Duration::from_millis(config.governance_scan_ms.max(10)),
    )
    .await
    .map_err(|p| anyhow::anyhow!("services hub: {p}"))?;
    let codes =
        yunnao_codes::hub::Codes::start(db.clone(), identity.clone(), services.licences.clone())
            .await
            .map_err(|p| anyhow::anyhow!("code hub: {p}"))?;
    let data = yunnao_data::Catalogue::start(db.clone(), identity.clone())
        .await
        .map_err(|p| anyhow::anyhow!("data hub: {p}"))?
        .with_import_limit(config.data_import_max_mib.max(1) << 20);
    data.connect_live_views(Arc::new(data_link::PlatformViews {
        context: context.clone(),
        sensing: sensing.clone(),
    }));
    data.spawn_background(config.data_seed_tables);
    let plan = yunnao_plan::Plan::start(
        db.clone(),
        identity.clone(),
        sensing.clone(),
        governance.clone(),
        services.store.clone(),
        codes.clone(),
        data.clone(),
    )
    .await
    .map_err(|p| anyhow::anyhow!("plan supervision: {p}"))?;
    let web = yunnao_web::Web::start(
        identity.clone(),
        sensing.clone(),
        governance.clone(),
        plan.clone(),
        services.clone(),
        codes.clone(),
        data.clone(),
        &bus,
    )
    .map_err(anyhow::Error::msg)?;

    let openapi_cell = Arc::new(std::sync::OnceLock::new());
    let platform = platform::Platform {
        db: db.clone(),
        metrics: metrics.clone(),
        openapi: openapi_cell.clone(),
    };
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(yunnao_identity::api::router().with_state(identity.clone()))
        .merge(yunnao_sensing::api::router().with_state(sensing.clone()))
        .merge(yunnao_context::api::router().with_state(context.clone()))
        .merge(yunnao_governance::api::router().with_state(governance.clone()))
        .merge(yunnao_plan::api::router().with_state(plan.clone()))
        .merge(yunnao_services::api::router().with_state(services.clone()))
        .merge(yunnao_codes::api::router().with_state(codes.clone()))
        .merge(yunnao_data::api::router().with_state(data))
        .merge(yunnao_web::router().with_state(web.clone()))
        .merge(platform::router().with_state(platform))
        .split_for_parts();
    let _ = openapi_cell.set(served_document(&openapi));

    let router = router
        .layer(axum::middleware::from_fn_with_state(
            identity.clone(),
            yunnao_identity::authenticate_and_audit,
        ))
        // Outside routing: an NGSI-LD path with an empty id matches no route but is a 400.
        .layer(axum::middleware::from_fn(yunnao_context::ngsi_path_ids));
    let router = yunnao_http::edge(
        router,
        &EdgeConfig {
            body_limit_bytes: config.body_limit_bytes,
            largest_body_bytes: config
                .body_limit_bytes
                .max(yunnao_sensing::api::BULK_BODY_LIMIT)
                .max((config.data_import_max_mib.max(1) << 20) as usize),
            max_in_flight: config.max_in_flight,
            ..EdgeConfig::default()
        },
        metrics.clone(),
    );
    Ok(App {
        router,
        openapi,
        db,
        bus,
        identity,
        sensing,
        context,
        governance,
        plan,
        services,
        web,
        external_mqtt,
        metrics,
        seed,
        serve: yunnao_http::ServeConfig {
            max_connections: config.max_connections.max(1),
            header_read_timeout: std::time::Duration::from_secs(config.request_timeout_secs.max(1)),
            body_frame_timeout: std::time::Duration::from_secs(config.request_timeout_secs.max(1)),
            ..yunnao_http::ServeConfig::default()
        },
        mqtt_max_connections: config.mqtt_max_connections.max(1),
    })
}

/// Serves `app` on `listener` (HTTP) and `mqtt` (device MQTT, when given) until `shutdown`
/// resolves.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    mqtt: Option<tokio::net::TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mqtt_limit = app.mqtt_max_connections;
    let mqtt_task = mqtt.map(|listener| {
        tokio::spawn(yunnao_sensing::mqtt::serve(
            app.sensing.clone(),
            listener,
            mqtt_limit,
        ))
    });
    // `/x/` is `/x` (NGSI-LD clients use both); trimmed before routing.
    let service = tower::Layer::layer(
        &tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash(),
        app.router,
    );
    let web = app.web.clone();
    yunnao_http::serve(listener, service, app.serve.clone(), async move {
        shutdown.await;
        // Live pages hold their connection open; end their streams so the stop completes.
        web.close();
    })
    .await?;
    if let Some(task) = mqtt_task {
        task.abort();
    }
    app.sensing.flush().await;
    if let Err(problem) = app.identity.checkpoint_now().await {
        tracing::error!(%problem, "final audit checkpoint failed");
    }
    app.db.close().await;
    Ok(())
}
