//! `agent-edge`: the native gateway (`serve`) and the whole pipeline on one
//! machine (`dev`): demo agent, development issuer and gateway.

// Only the core may not read the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use agent_edge::config::Config;
use agent_edge::demo::issuer::{self, DevIssuer};
use agent_edge::demo::origin::{self as demo_origin, DemoOriginSettings};
use agent_edge::platform::native;

#[derive(Parser)]
#[command(
    name = "agent-edge",
    version,
    about = "An edge gateway for streaming AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway, configured from the environment (see README).
    Serve {
        /// Address to listen on [default: $LISTEN_ADDR or 127.0.0.1:8787]
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run the demo agent, a development JWT issuer and the gateway in front.
    Dev {
        /// Address of the gateway [default: $LISTEN_ADDR or 127.0.0.1:8787]
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Delay between the demo agent's words, in milliseconds.
        #[arg(long, default_value_t = 60)]
        word_delay_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("agent-edge: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve { listen } => runtime.block_on(serve(listen)),
        Command::Dev {
            listen,
            word_delay_ms,
        } => runtime.block_on(dev(listen, Duration::from_millis(word_delay_ms))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("agent-edge: {message}");
            ExitCode::FAILURE
        }
    }
}

fn listen_addr(flag: Option<SocketAddr>) -> Result<SocketAddr, String> {
    if let Some(addr) = flag {
        return Ok(addr);
    }
    match std::env::var("LISTEN_ADDR") {
        Ok(value) if !value.trim().is_empty() => value.trim().parse().map_err(|_| {
            "invalid configuration: LISTEN_ADDR: expected host:port, like 127.0.0.1:8787".to_owned()
        }),
        _ => Ok(SocketAddr::from(([127, 0, 0, 1], 8787))),
    }
}

async fn serve(listen: Option<SocketAddr>) -> Result<(), String> {
    let addr = listen_addr(listen)?;
    let config = Config::from_lookup(|name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    native::serve(config, addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

async fn dev(listen: Option<SocketAddr>, word_delay: Duration) -> Result<(), String> {
    let addr = listen_addr(listen)?;
    let gateway_listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e} (try --listen 127.0.0.1:0)"))?;

    let gateway_addr = gateway_listener.local_addr().map_err(|e| e.to_string())?;

    let mut settings = DemoOriginSettings::demo();
    settings.word_delay = word_delay;
    let origin_listener = bind_loopback().await?;
    let issuer_listener = bind_loopback().await?;
    let issuer_addr = issuer_listener.local_addr().map_err(|e| e.to_string())?;
    let vars = dev_vars(
        &settings,
        origin_listener.local_addr().map_err(|e| e.to_string())?,
        issuer_addr,
    );

    let origin = demo_origin::spawn(settings, origin_listener)
        .await
        .map_err(|e| format!("demo agent: {e}"))?;
    let dev_issuer = DevIssuer::generate();
    let issuer_server =
        issuer::spawn_for_pages(dev_issuer, issuer_listener, page_origins(gateway_addr))
            .await
            .map_err(|e| format!("development issuer: {e}"))?;

    let mut config =
        Config::from_lookup(|name| vars.get(name).cloned()).map_err(|e| e.to_string())?;
    // The chat page offers a button that fetches a token from the issuer.
    config.dev_token_url = Some(format!("http://{issuer_addr}/token"));
    let ui = config.ui;
    let gateway = native::spawn(config, gateway_listener, native::stderr_log())
        .await
        .map_err(|e| format!("gateway: {e}"))?;

    let token = issuer_server.mint("demo-user", Duration::from_secs(3600), SystemTime::now());
    let url = gateway.url();
    let page = if ui {
        format!(
            "\nThe chat page: open {url}/ in a browser (\"Get a development token\" signs in).\n"
        )
    } else {
        String::new()
    };
    println!(
        r#"
agent-edge dev is running:
  gateway            {url}
  demo agent         http://{origin} (AgentCore protocol, SigV4 checked)
  development issuer {issuer} (JWKS at /.well-known/jwks.json)

A token, valid for an hour:
  export TOKEN='{token}'
A fresh one at any time:
  export TOKEN=$(curl -s -X POST {issuer}/token)

Original mode (the agent's SSE, byte for byte):
  curl -N {url}/invocations -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"prompt":"hello"}}'

Transformed mode (plain text, then usage and session id):
  curl -N {url}/invocations -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"prompt":"hello","response":"transformed"}}'

{page}
Press Ctrl-C to stop. One JSON log line per request follows.
"#,
        origin = origin.addr,
        issuer = issuer_server.issuer_url(),
    );
    native::shutdown_signal().await;
    gateway.shutdown().await;
    drop(origin);
    drop(issuer_server);
    Ok(())
}

/// The origins the chat page may be opened on: the gateway's address and,
/// for a loopback or unspecified address, `localhost` and `127.0.0.1`.
fn page_origins(gateway: SocketAddr) -> Vec<String> {
    let port = gateway.port();
    let mut origins = vec![format!("http://{gateway}")];
    if gateway.ip().is_loopback() || gateway.ip().is_unspecified() {
        origins.push(format!("http://localhost:{port}"));
        origins.push(format!("http://127.0.0.1:{port}"));
    }
    origins.dedup();
    origins
}

async fn bind_loopback() -> Result<TcpListener, String> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on loopback: {e}"))
}

/// The gateway's configuration for `dev`: the same variables a deployment sets.
fn dev_vars(
    settings: &DemoOriginSettings,
    origin: SocketAddr,
    issuer: SocketAddr,
) -> HashMap<&'static str, String> {
    let issuer_url = format!("http://{issuer}");
    HashMap::from([
        ("AGENT_RUNTIME_ARN", settings.runtime_arn.clone()),
        ("AGENT_QUALIFIER", settings.qualifier.clone()),
        ("ORIGIN_URL", format!("http://{origin}")),
        ("AWS_REGION", settings.region.clone()),
        (
            "AWS_ACCESS_KEY_ID",
            settings.credentials.access_key_id.clone(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            settings.credentials.secret_access_key.expose().to_owned(),
        ),
        ("AUTH", "jwt".to_owned()),
        ("JWT_ISSUER", issuer_url),
        ("JWT_AUDIENCE", issuer::DEV_AUDIENCE.to_owned()),
        ("CORS_ALLOW_ORIGINS", "http://localhost:3000".to_owned()),
    ])
}
