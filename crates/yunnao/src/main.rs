use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use yunnao::{Config, Overrides};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 雲腦 yunnao — the open city operating platform.
#[derive(Parser)]
#[command(name = "yunnao", version, about)]
struct Cli {
    /// Configuration file (default: ./yunnao.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// HTTP listen address (default 127.0.0.1:8080).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Device MQTT listen address (default 127.0.0.1:1884; "" turns it off).
    #[arg(long, global = true)]
    mqtt_listen: Option<String>,
    /// Consume device telemetry from an external broker: mqtt://host:port.
    #[arg(long, global = true)]
    mqtt: Option<String>,
    /// Data folder (default ./yunnao-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH (default) or postgres://…
    #[arg(long, global = true)]
    db: Option<String>,
    /// Event bus URL: memory:// (default).
    #[arg(long, global = true)]
    bus: Option<String>,
    /// Authentication on /ngsi-ld/v1: on (default) or off (only behind a policy-enforcement
    /// proxy, or for a conformance suite).
    #[arg(long, global = true, value_parser = ["on", "off"])]
    ngsi_ld_auth: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform.
    Serve,
    /// Run the platform with demo accounts and the simulated city in a fresh data folder (or
    /// --data-dir).
    Demo {
        /// `small` (a few hundred devices, starts in seconds) or `city` (300,000 parking spaces
        /// and thousands of other sensors).
        #[arg(long, default_value = "small", value_parser = ["small", "city"])]
        scale: String,
        /// The simulated city's seed (same seed, same city and decisions).
        #[arg(long, default_value_t = 2022)]
        seed: u64,
    },
    /// Run the simulated city against a running server, through its public APIs.
    Sim {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        target: String,
        /// A platform admin's credentials.
        #[arg(long, env = "YUNNAO_USERNAME", default_value = "admin")]
        username: String,
        #[arg(long, env = "YUNNAO_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "small", value_parser = ["small", "city"])]
        scale: String,
        #[arg(long, default_value_t = 2022)]
        seed: u64,
        /// Reporting intervals are the profiles' times this factor.
        #[arg(long, default_value_t = 1.0)]
        interval_factor: f64,
        /// The server's device MQTT endpoint (host:port): the gas and air sensors (up to
        /// 1,000) then connect there, one connection each; without it every device uses HTTP.
        #[arg(long)]
        device_mqtt: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// The audit chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Devices of the sensing hub, through a running server's API.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Department e-seals.
    Seal {
        #[command(subcommand)]
        command: SealCommand,
    },
    /// E-licences of the services hub.
    Licence {
        #[command(subcommand)]
        command: LicenceCommand,
    },
    /// Codes of 一码通城 and of the other issuers the bureau trusts.
    Code {
        #[command(subcommand)]
        command: CodeCommand,
    },
    /// Tables of the data hub, through a running server's API.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Print the version.
    Version,
}

/// The server a client command calls, and how it signs in.
#[derive(clap::Args)]
struct Server {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A bearer token or API key (or sign in with --username/--password).
    #[arg(long, env = "YUNNAO_TOKEN")]
    token: Option<String>,
    #[arg(long, env = "YUNNAO_USERNAME")]
    username: Option<String>,
    #[arg(long, env = "YUNNAO_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Import a file (CSV in UTF-8 or GBK, XLSX, JSON, JSON Lines) as the next version of a
    /// dataset's table, with a progress bar; a file with bad rows is refused whole and each
    /// bad row printed.
    Import {
        /// The dataset's id.
        dataset: String,
        file: PathBuf,
        /// `csv`, `xlsx`, `json` or `jsonl`; from the file's extension when not given.
        #[arg(long)]
        format: Option<String>,
        /// For CSV: `auto`, `utf-8` or `gbk`.
        #[arg(long, default_value = "auto")]
        encoding: String,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Subcommand)]
enum CodeCommand {
    /// Verify a code offline, stage by stage (prefix, base45, zlib, COSE, claims, signature,
    /// expiry at --at), and print the verdict as JSON; exit 0 only when every stage passes.
    /// Trust comes from issuer certificates (--trust, PEM, base64 of DER, or DER; repeatable)
    /// and from a key set saved from `GET /api/v1/codes/keys` (--keys), whose signature is
    /// checked when --key-set-key (the pinned KS1 key, hex) is given.
    Verify {
        #[arg(long)]
        trust: Vec<PathBuf>,
        #[arg(long)]
        keys: Option<PathBuf>,
        #[arg(long)]
        key_set_key: Option<String>,
        /// Validation time, RFC 3339 (now unless given).
        #[arg(long)]
        at: Option<String>,
        /// Another scheme's prefix to read (`HC1:` and `QD1:` always are).
        #[arg(long)]
        prefix: Vec<String>,
        /// The code's text (`QD1:…`, `HC1:…`), or `-` to read it from standard input.
        code: String,
    },
}

#[derive(Subcommand)]
enum LicenceCommand {
    /// Verify an e-licence offline: its issuer's seal (with the issuer's public key, hex), its
    /// identifier's ISO 7064 MOD 37,36 check character, its holder's number and its validity.
    /// FILE is the licence as `GET /api/v1/services/licences/{id}` returns it, or its sealed
    /// document.
    Verify {
        #[arg(long)]
        public_key: String,
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the chain and the signed checkpoints; exit 1 naming the first bad record.
    Verify {
        /// A head printed earlier by `yunnao audit head` and kept outside the database: the
        /// chain must still hold it (a log cut below it, or deleted whole, fails).
        #[arg(long, value_name = "FILE")]
        expect_head: Option<std::path::PathBuf>,
    },
    /// Sign the current head and print it as JSON, to keep outside the database.
    Head,
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Register the devices listed in a CSV or XLSX file (columns id, name, profile,
    /// department, lon, lat, tags). Access tokens are written to FILE.tokens.csv.
    Import {
        file: PathBuf,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Subcommand)]
enum SealCommand {
    /// Verify a sealed JSON document offline with a department's public key (hex).
    Verify {
        #[arg(long)]
        public_key: String,
        file: PathBuf,
    },
}

const DEMO_PASSWORD: &str = "yunnao-demo";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("yunnao: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut overrides = Overrides {
        listen: cli.listen,
        mqtt_listen: cli.mqtt_listen,
        mqtt: cli.mqtt,
        data_dir: cli.data_dir,
        db: cli.db,
        bus: cli.bus,
        admin_password: None,
        ngsi_ld_auth: cli.ngsi_ld_auth.map(|v| v == "on"),
    };
    let mut demo_dir = None;
    if matches!(cli.command, Command::Demo { .. }) {
        if overrides.data_dir.is_none() {
            let dir = tempfile::Builder::new().prefix("yunnao-demo-").tempdir()?;
            overrides.data_dir = Some(dir.path().to_path_buf());
            demo_dir = Some(dir);
        }
        overrides.admin_password = Some(DEMO_PASSWORD.into());
    }
    let config = Config::load(cli.config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    // One-shot commands print their own result; only warnings from the layers below belong there.
    let serving = matches!(
        cli.command,
        Command::Serve | Command::Demo { .. } | Command::Sim { .. }
    );
    init_tracing(if serving { &config.log } else { "warn" });
    match cli.command {
        Command::Version => {
            println!("yunnao {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            yunnao::open_db(&config).await?;
            println!("migrations applied to {}", config.db_url());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve => {
            serve(&config, None).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { scale, seed } => {
            let scale = yunnao_sim::Scale::parse(&scale).unwrap_or(yunnao_sim::Scale::Small);
            serve(&config, Some((scale, seed))).await?;
            drop(demo_dir);
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim {
            target,
            username,
            password,
            scale,
            seed,
            interval_factor,
            device_mqtt,
        } => {
            let mut sim = yunnao_sim::SimConfig::new(&target, &username, &password);
            sim.scale = yunnao_sim::Scale::parse(&scale).unwrap_or(yunnao_sim::Scale::Small);
            sim.seed = seed;
            sim.interval_factor = interval_factor;
            sim.mqtt = device_mqtt;
            let stats = std::sync::Arc::new(yunnao_sim::SimStats::default());
            yunnao_sim::run(sim, stats.clone(), shutdown_signal()).await?;
            println!(
                "simulation stopped: {} readings, {} Open311 requests, {} workflow steps sent",
                stats
                    .readings_sent
                    .load(std::sync::atomic::Ordering::Relaxed),
                stats
                    .reports_filed
                    .load(std::sync::atomic::Ordering::Relaxed),
                stats.steps_taken.load(std::sync::atomic::Ordering::Relaxed)
            );
            println!(
                "MQTT messages acknowledged: {}; progress reports filed: {}",
                stats
                    .mqtt_acknowledged
                    .load(std::sync::atomic::Ordering::Relaxed),
                stats
                    .progress_reports
                    .load(std::sync::atomic::Ordering::Relaxed)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Verify { expect_head },
        } => audit_verify(&config, expect_head.as_deref()).await,
        Command::Audit {
            command: AuditCommand::Head,
        } => audit_head(&config).await,
        Command::Seal {
            command: SealCommand::Verify { public_key, file },
        } => seal_verify(&public_key, &file),
        Command::Licence {
            command: LicenceCommand::Verify { public_key, file },
        } => licence_verify(&public_key, &file),
        Command::Code {
            command:
                CodeCommand::Verify {
                    trust,
                    keys,
                    key_set_key,
                    at,
                    prefix,
                    code,
                },
        } => code_verify(
            &trust,
            keys.as_deref(),
            key_set_key.as_deref(),
            at.as_deref(),
            &prefix,
            &code,
        ),
        Command::Devices {
            command: DevicesCommand::Import { file, server },
        } => devices_import(&file, server).await,
        Command::Data {
            command:
                DataCommand::Import {
                    dataset,
                    file,
                    format,
                    encoding,
                    server,
                },
        } => data_import(&dataset, &file, format, &encoding, server).await,
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Runs the platform; with `demo` (scale, seed) also the demo accounts and the simulated city.
async fn serve(config: &Config, demo: Option<(yunnao_sim::Scale, u64)>) -> anyhow::Result<()> {
    let app = yunnao::build(config).await?;
    if let Some(password) = &app.seed.generated_admin_password {
        let path = config.data_dir.join("admin-password.txt");
        std::fs::write(&path, format!("{password}\n"))?;
        println!(
            "Created the platform admin: username admin, password {password} (also in {})",
            path.display()
        );
    }
    let mut accounts = Vec::new();
    if demo.is_some() {
        accounts = app
            .identity
            .seed_demo_accounts(DEMO_PASSWORD)
            .await
            .map_err(|p| anyhow::anyhow!("demo accounts: {p}"))?;
        // The demo grid worker walks 市南区 (Shinan district).
        app.governance
            .assign_grids("grid.worker", &["370202".to_owned()])
            .await
            .map_err(|p| anyhow::anyhow!("demo grid worker: {p}"))?;
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let address = listener.local_addr()?;
    let mqtt = if config.mqtt_listen.is_empty() {
        None
    } else {
        let mqtt = tokio::net::TcpListener::bind(&config.mqtt_listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen for MQTT on {}: {e} (set --mqtt-listen)",
                    config.mqtt_listen
                )
            })?;
        println!(
            "device MQTT on mqtt://{} (username = device access token)",
            mqtt.local_addr()?
        );
        Some(mqtt)
    };
    println!(
        "yunnao {} serving http://{address}/ (database: {}, data: {})",
        env!("CARGO_PKG_VERSION"),
        app.db.dialect().name(),
        config.data_dir.display()
    );
    let mut simulation = None;
    if let Some((scale, seed)) = demo {
        let mut sim =
            yunnao_sim::SimConfig::new(&format!("http://{address}"), "admin", DEMO_PASSWORD);
        sim.scale = scale;
        sim.seed = seed;
        sim.mqtt = mqtt
            .as_ref()
            .and_then(|m| m.local_addr().ok())
            .map(|a| a.to_string());
        // A few hundred devices at their profiles' intervals would look asleep: the small
        // city reports ten times as often.
        sim.interval_factor = match scale {
            yunnao_sim::Scale::Small => 0.1,
            yunnao_sim::Scale::City => 1.0,
        };
        let stats = std::sync::Arc::new(yunnao_sim::SimStats {
            planned_devices: app.web.planned_devices(),
            ..yunnao_sim::SimStats::default()
        });
        simulation = Some(tokio::spawn(async move {
            if let Err(e) = yunnao_sim::run(sim, stats, std::future::pending()).await {
                tracing::error!(error = %e, "the simulated city stopped");
            }
        }));
        println!(
            "Simulated city: {scale:?} scale, seed {seed} (devices and reports are labelled simulated)"
        );
    }
    if demo.is_some() {
        println!("Demo sign-ins (password {DEMO_PASSWORD}): admin (platform_admin)");
        for (username, role) in &accounts {
            println!("  {username} ({role})");
        }
        println!(
            "Sign in: curl -s -X POST http://{address}/api/v1/auth/sign-in -H 'content-type: application/json' -d '{{\"username\":\"admin\",\"password\":\"{DEMO_PASSWORD}\"}}'"
        );
    }
    yunnao::serve(app, listener, mqtt, async move {
        shutdown_signal().await;
        if let Some(simulation) = simulation {
            simulation.abort();
        }
    })
    .await?;
    println!("yunnao stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

fn platform_keys(config: &Config) -> anyhow::Result<yunnao_identity::PlatformKeys> {
    let key_path = config.platform_key_path();
    if !key_path.exists() {
        anyhow::bail!(
            "no platform key at {}: checkpoints cannot be checked",
            key_path.display()
        );
    }
    yunnao_identity::PlatformKeys::load_or_create(&key_path).map_err(anyhow::Error::msg)
}

async fn audit_head(config: &Config) -> anyhow::Result<ExitCode> {
    let keys = platform_keys(config)?;
    let db = yunnao::open_db(config).await?;
    let identity = yunnao_identity::Identity::new(
        db.clone(),
        yunnao_bus::Bus::from_url("memory://")?,
        keys,
        yunnao_identity::IdentityConfig::default(),
    );
    let head = identity
        .signed_head()
        .await
        .map_err(|p| anyhow::anyhow!("{p}"))?;
    db.close().await;
    match head {
        Some(head) => {
            println!("{}", serde_json::to_string(&head)?);
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("the audit log is empty: there is no head to sign"),
    }
}

async fn audit_verify(
    config: &Config,
    expect_head: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let keys = platform_keys(config)?;
    let expected: Option<yunnao_identity::audit::SignedHead> = match expect_head {
        Some(path) => Some(
            serde_json::from_str(&std::fs::read_to_string(path)?).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not a head from `yunnao audit head`: {e}",
                    path.display()
                )
            })?,
        ),
        None => None,
    };
    let db = yunnao::open_db(config).await?;
    let report = yunnao_identity::audit::verify_against(&db, &keys.public_key(), expected.as_ref())
        .await
        .map_err(|p| anyhow::anyhow!("{p}"))?;
    db.close().await;
    if report.ok {
        println!(
            "audit chain OK: {} records, {} signed checkpoints",
            report.records, report.checkpoints
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "audit chain BROKEN at record {}: {}",
            report.first_bad_seq.unwrap_or_default(),
            report.reason.unwrap_or_default()
        );
        Ok(ExitCode::from(1))
    }
}

fn seal_verify(public_key: &str, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let key = yunnao_gm::Sm2PublicKey::from_hex(public_key)?;
    let text = std::fs::read_to_string(file)?;
    let sealed: yunnao_identity::seals::SealedDocument = serde_json::from_str(&text)?;
    match yunnao_identity::seals::verify_offline(&sealed, &key) {
        Ok(()) => {
            println!(
                "seal valid: {} key {} sealed at {}",
                sealed.seal.department, sealed.seal.key_id, sealed.seal.sealed_at
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            println!("seal INVALID: {}", problem.detail.unwrap_or(problem.title));
            Ok(ExitCode::from(1))
        }
    }
}

fn code_verify(
    trust: &[PathBuf],
    keys: Option<&std::path::Path>,
    key_set_key: Option<&str>,
    at: Option<&str>,
    prefixes: &[String],
    code: &str,
) -> anyhow::Result<ExitCode> {
    let mut set = yunnao_codes::KeySet::new();
    let mut revoked_subjects = Vec::new();
    let mut revoked_cards = Vec::new();
    if let Some(path) = keys {
        let text = std::fs::read_to_string(path)?;
        let signed: yunnao_codes::hub::SignedKeySet = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a key set: {e}", path.display()))?;
        let (keys, subjects, cards) = match key_set_key {
            Some(pinned) => signed.verified(pinned).map_err(anyhow::Error::msg)?,
            None => (
                signed.document.key_set().map_err(anyhow::Error::msg)?,
                signed.document.revoked_subjects.clone(),
                signed.document.revoked_cards.clone(),
            ),
        };
        set = keys;
        revoked_subjects = subjects;
        revoked_cards = cards;
    }
    for path in trust {
        let bytes = std::fs::read(path)?;
        set.trust_certificate(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    for prefix in prefixes {
        set.accept_prefix(prefix);
    }
    let at = match at {
        Some(text) => {
            yunnao_core::time::parse_rfc3339_ms(text)
                .ok_or_else(|| anyhow::anyhow!("--at: not an RFC 3339 time: {text}"))?
                / 1000
        }
        None => yunnao_core::time::now_ms() / 1000,
    };
    let code = if code == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(std::io::stdin(), 8192), &mut text)?;
        text
    } else {
        code.to_owned()
    };
    let verdict = yunnao_codes::verify(&code, &set, at);
    let mut out = verdict.to_json();
    // The key set's revocations, as an offline gate applies them.
    let revoked = verdict.decoded.as_ref().and_then(|claims| {
        if revoked_subjects.contains(&claims.subject) {
            Some("the holder is revoked".to_owned())
        } else {
            claims
                .refs
                .iter()
                .find(|r| revoked_cards.contains(&r.handle))
                .map(|r| format!("the {} bound to it is revoked", r.kind))
        }
    });
    out["revoked"] = serde_json::Value::Bool(revoked.is_some());
    if let Some(why) = &revoked {
        out["valid"] = false.into();
        out["error"] = why.clone().into();
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if verdict.valid() && revoked.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn licence_verify(public_key: &str, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let key = yunnao_gm::Sm2PublicKey::from_hex(public_key)?;
    let text = std::fs::read_to_string(file)?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    // The API's licence carries its status beside the sealed document; only the two sealed
    // members are what the seal covers.
    let sealed: yunnao_identity::seals::SealedDocument = serde_json::from_value(
        serde_json::json!({"document": value["document"], "seal": value["seal"]}),
    )?;
    let document: yunnao_services::licences::LicenceDocument =
        serde_json::from_value(value["document"].clone())?;
    let mut faults = Vec::new();
    if let Err(problem) = yunnao_identity::seals::verify_offline(&sealed, &key) {
        faults.push(format!("seal: {}", problem.detail.unwrap_or(problem.title)));
    }
    if sealed.seal.department != document.issuer {
        faults.push("seal: sealed by another department than the issuer".to_owned());
    }
    if !yunnao_services::ids::mod37_36_valid(&document.id) {
        faults.push(format!(
            "identifier {}: its check character is wrong",
            document.id
        ));
    }
    if yunnao_services::ids::resident_id(&document.holder_id).is_err()
        && yunnao_services::ids::credit_code(&document.holder_id).is_err()
    {
        faults.push("holder: not a valid identity number or credit code".to_owned());
    }
    if let Some(until) = &document.valid_until
        && yunnao_core::time::parse_rfc3339_ms(until)
            .is_some_and(|ms| ms <= yunnao_core::time::now_ms())
    {
        faults.push(format!("expired {until}"));
    }
    if faults.is_empty() {
        println!(
            "licence valid: {} {} of {}, issued by {} at {}, seal {}",
            document.id,
            document.licence_type,
            document.holder_name,
            document.issuer,
            document.issued_at,
            sealed.seal.key_id
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("licence INVALID: {}", faults.join("; "));
        Ok(ExitCode::from(1))
    }
}

impl Server {
    /// The base URL without a trailing `/`, and the token to call it with: the one given, or
    /// one from signing in.
    async fn sign_in(self, client: &reqwest::Client) -> anyhow::Result<(String, String)> {
        let url = self.url.trim_end_matches('/').to_owned();
        let token = match (self.token, self.username, self.password) {
            (Some(token), _, _) => token,
            (None, Some(username), Some(password)) => {
                let response = client
                    .post(format!("{url}/api/v1/auth/sign-in"))
                    .json(&serde_json::json!({"username": username, "password": password}))
                    .send()
                    .await?;
                if !response.status().is_success() {
                    anyhow::bail!(
                        "sign-in failed: {}",
                        response.text().await.unwrap_or_default()
                    );
                }
                let body: serde_json::Value = response.json().await?;
                body["access_token"].as_str().unwrap_or_default().to_owned()
            }
            _ => anyhow::bail!("give --token, or --username and --password"),
        };
        Ok((url, token))
    }
}

/// Uploads a file as a dataset's next version, the upload's progress on a bar.
async fn data_import(
    dataset: &str,
    file: &std::path::Path,
    format: Option<String>,
    encoding: &str,
    server: Server,
) -> anyhow::Result<ExitCode> {
    use futures::StreamExt as _;
    let client = reqwest::Client::new();
    let (url, token) = server.sign_in(&client).await?;
    let format = format
        .or_else(|| {
            file.extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
        })
        .unwrap_or_else(|| "csv".into());
    let size = std::fs::metadata(file)?.len();
    let progress = indicatif::ProgressBar::new(size);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {msg} ({bytes_per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    progress.set_message("uploading");
    let counted = progress.clone();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::open(file).await?, 1 << 20)
            .map(move |chunk| {
                if let Ok(bytes) = &chunk {
                    counted.inc(bytes.len() as u64);
                    if counted.position() >= counted.length().unwrap_or(0) {
                        counted.set_message("checking every row, then writing");
                    }
                }
                chunk
            });
    let response = client
        .post(format!(
            "{url}/api/v1/data/datasets/{dataset}/versions?format={format}&encoding={encoding}"
        ))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status.is_success() {
        progress.finish_with_message("imported");
        let v = &body["version"];
        println!(
            "{dataset} version {}: {} rows in {} s ({} encoding); completeness {}, validity {}, uniqueness {}",
            v["version"],
            v["rows"],
            body["seconds"],
            v["encoding"].as_str().unwrap_or(""),
            v["quality"]["completeness"],
            v["quality"]["validity"],
            v["quality"]["uniqueness"]
        );
        return Ok(ExitCode::SUCCESS);
    }
    progress.abandon_with_message("refused");
    eprintln!(
        "refused ({status}): {}",
        body["detail"].as_str().unwrap_or("")
    );
    for error in body["errors"].as_array().into_iter().flatten() {
        eprintln!(
            "  row {}{}: {}",
            error["row"],
            error["field"]
                .as_str()
                .map(|f| format!(", {f}"))
                .unwrap_or_default(),
            error["message"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::from(1))
}

async fn devices_import(file: &std::path::Path, server: Server) -> anyhow::Result<ExitCode> {
    use yunnao_sensing::tables;
    let bytes = std::fs::read(file)?;
    let is_xlsx = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("xlsx"));
    let rows = if is_xlsx {
        tables::devices_from_xlsx(&bytes)
    } else {
        tables::devices_from_csv(&bytes)
    }
    .map_err(anyhow::Error::msg)?;
    let client = reqwest::Client::new();
    let (url, token) = server.sign_in(&client).await?;

    let progress = indicatif::ProgressBar::new(rows.len() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} devices {msg} ({eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rejected: Vec<(usize, String)> = Vec::new();
    let mut created: Vec<(String, String)> = Vec::new();
    let mut pending: Vec<(usize, serde_json::Value)> = Vec::new();
    for (index, row) in rows.into_iter().enumerate() {
        match row {
            Ok(device) => pending.push((index + 1, device_json(&device))),
            Err((row, reason)) => {
                rejected.push((row, reason));
                progress.inc(1);
            }
        }
    }
    for chunk in pending.chunks(200) {
        let body: Vec<&serde_json::Value> = chunk.iter().map(|(_, v)| v).collect();
        let response = client
            .post(format!("{url}/api/v1/devices/import"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?;
        if !response.status().is_success() {
            progress.abandon();
            anyhow::bail!(
                "import refused: {}",
                response.text().await.unwrap_or_default()
            );
        }
        let report: serde_json::Value = response.json().await?;
        let original_row = |row: &serde_json::Value| {
            row.as_u64()
                .and_then(|r| chunk.get((r as usize).saturating_sub(1)))
                .map_or(0, |(n, _)| *n)
        };
        for item in report["created"].as_array().into_iter().flatten() {
            created.push((
                item["id"].as_str().unwrap_or_default().to_owned(),
                item["access_token"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        for item in report["rejected"].as_array().into_iter().flatten() {
            rejected.push((
                original_row(&item["row"]),
                item["reason"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_with_message("done");

    let tokens_path = file.with_extension(format!(
        "{}.tokens.csv",
        file.extension()
            .and_then(|e| e.to_str())
            .unwrap_or("import")
    ));
    let mut writer = csv::Writer::from_path(&tokens_path)?;
    writer.write_record(["id", "access_token"])?;
    for (id, token) in &created {
        writer.write_record([id, token])?;
    }
    writer.flush()?;
    rejected.sort_by_key(|(row, _)| *row);
    println!(
        "{} devices created (tokens in {}), {} rows refused",
        created.len(),
        tokens_path.display(),
        rejected.len()
    );
    for (row, reason) in &rejected {
        println!("  row {row}: {reason}");
    }
    Ok(if rejected.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn device_json(device: &yunnao_sensing::NewDevice) -> serde_json::Value {
    serde_json::json!({
        "id": device.id,
        "name": device.name,
        "profile": device.profile,
        "department": device.department,
        "location": device.location,
        "tags": device.tags,
        "simulated": device.simulated,
    })
}
