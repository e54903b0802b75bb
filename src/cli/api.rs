//! `automate api [--listen ADDR] [--config FILE]`: serves the REST API
//! (`automate_api`, `docs/api.md`) on `--db` and `--datastore` without the
//! event pipeline's catchers, for automation requests and datastore
//! browsing. State-machine retries of the requests it runs are re-delivered
//! by a retry runner in the same process. Runs until SIGTERM or SIGINT.

use super::compose::open_store;
use super::Global;
use anyhow::Context;
use automate_api::{router, serve_with, ApiState};
use automate_datastore::Datastore;
use automate_engine::deliver::{run_due, DEFAULT_MAX_DELIVERIES};
use automate_engine::Engine;
use automate_events::config::{ApiConfig, EngineConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `automate api`'s options: the address and the configuration file.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// `host:port` to listen on (default: `api.listen` of --config, else
    /// 127.0.0.1:3000). Port 0 picks a free port; the address is printed.
    #[arg(long)]
    pub listen: Option<String>,
    /// automate.yaml to read `api.listen`, `api.token`, `api.public_url`,
    /// `api.limits` and the `engine:` budget from. The token can also (and
    /// without a file, must) come from AUTOMATE_API_TOKEN.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Serves the API on `--db` and `--datastore` until SIGTERM or SIGINT,
/// printing `automate api: listening on http://ADDR/api` once bound and
/// advertising the address beside the store (`<db>.server`, with the
/// token: `api.token`, `AUTOMATE_API_TOKEN`, else one made for the
/// session). Fails on a bad
/// `--config`, or when the store cannot be opened or the address bound.
pub fn run(global: &Global, args: ApiArgs) -> anyhow::Result<ExitCode> {
    let (mut api, budget) = match &args.config {
        Some(path) => {
            let cfg = super::load_config(path)?;
            (cfg.api, cfg.engine.limits())
        }
        None => (ApiConfig::default(), EngineConfig::default().limits()),
    };
    if let Ok(token) = std::env::var(super::API_TOKEN_ENV) {
        if !token.is_empty() {
            api.token = token;
        }
    }
    // Without one, a token for this session, advertised beside the store.
    if api.token.is_empty() {
        api.token = super::remote::session_token()?;
    }
    let listen = args.listen.clone().unwrap_or_else(|| api.listen.clone());
    // As `automate run` opens it: every API call that writes commits its
    // unit of work durably before answering, and a re-delivered retry
    // completes its scheduled item (durably) after its writes.
    let store = Arc::new(
        open_store(&global.db)
            .with_context(|| format!("opening the object store {}", global.db.display()))?
            .with_relaxed_durability(true),
    );
    let (ds, problems) = Datastore::open(&global.datastore);
    for p in &problems {
        eprintln!("warning: {p}");
    }
    let mut engine = Engine::new(Arc::new(ds)).with_store(store.clone());
    engine.options.budget = budget;
    let (engine, _runner) = automate_control::with_control(engine);

    // Re-delivers the state-machine retries of the requests run here.
    let stop = Arc::new(AtomicBool::new(false));
    let retrier = {
        let engine = engine.clone();
        let schedule = store.schedule();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("automate-retries".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match run_due(&engine, &schedule, 16, DEFAULT_MAX_DELIVERIES) {
                        Ok(done) if !done.is_empty() => continue,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(target: "evm", "MIQ(MiqAeEngine.deliver) running due retries: {e}")
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })?
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        println!("automate api: listening on http://{addr}/api");
        // Without it the API still serves: the commands need --server.
        let advertisement = super::remote::Advertisement::write(
            &global.db,
            &super::compose::served_url(addr),
            &api.token,
        )
        .map_err(|e| eprintln!("warning: not advertised: {e:#}"))
        .ok();
        let state = ApiState::new(api.token.clone(), engine, store)?.with_config(&api)?;
        let shutdown = CancellationToken::new();
        let limits = api.limits.clone();
        let stop = shutdown.clone();
        let server =
            tokio::spawn(
                async move { serve_with(listener, router(state, None), &limits, stop).await },
            );
        signal().await;
        shutdown.cancel();
        let served = server.await.context("the API server panicked");
        drop(advertisement);
        served??;
        anyhow::Ok(())
    });
    stop.store(true, Ordering::Relaxed);
    let _ = retrier.join();
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
