//! `agent-edge`: the native gateway (`serve`), the whole pipeline on one
//! machine (`dev`: demo agent, development issuer and gateway, the gateway
//! natively or as the Worker or the Lambda function), and what a recorded
//! origin stream becomes for a client (`transform`).

// Only the core may not read the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use agent_edge::config::{Config, ResponseMode, DEFAULT_MAX_EVENT_BYTES};
use agent_edge::demo::issuer::{self, DevIssuer};
use agent_edge::demo::origin::{self as demo_origin, DemoOriginSettings};
use agent_edge::error::{Code, StreamError};
use agent_edge::gateway;
use agent_edge::platform::native;
use agent_edge::sse::{OriginBodyKind, Transformer, TransformerOptions};

#[path = "agent-edge/targets.rs"]
mod targets;

use targets::{StopSignals, Target, Tool};

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
        /// What runs the gateway: this process, the Worker under `wrangler
        /// dev`, or the Lambda function under `cargo lambda watch`.
        #[arg(long, value_enum, default_value_t = Target::Native)]
        target: Target,
        /// The agent-edge checkout whose Worker or Lambda function runs, with
        /// the tools `scripts/setup.sh` installed in it [default: the one
        /// this binary was built from]
        #[arg(long)]
        repository: Option<PathBuf>,
    },
    /// Print what a client receives for a recorded origin event stream,
    /// byte for byte as the gateway sends it (without keepalives).
    Transform {
        /// The client's response mode: original or transformed.
        #[arg(long, default_value = "transformed", value_parser = parse_mode)]
        response: ResponseMode,
        /// The session id of the transformed trailer [default: a new UUID]
        #[arg(long)]
        session_id: Option<String>,
        /// The recorded stream [default: standard input, also as `-`]
        file: Option<PathBuf>,
    },
}

fn parse_mode(value: &str) -> Result<ResponseMode, String> {
    value
        .parse()
        .map_err(|()| "expected original or transformed".to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Transform {
        response,
        session_id,
        file,
    } = cli.command
    {
        // Synchronous: no runtime needed to read a file.
        return exit(transform(response, session_id, file));
    }
    native::log_panics(native::stderr_log());
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
            target,
            repository,
        } => runtime.block_on(dev(
            listen,
            Duration::from_millis(word_delay_ms),
            target,
            repository,
        )),
        Command::Transform { .. } => unreachable!("handled above"),
    };
    exit(result)
}

fn exit(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("agent-edge: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `agent-edge transform`: the origin stream read as it comes, through the
/// gateway's [`Transformer`] (default limits, no keepalives), each output
/// written and flushed as soon as it is known.
fn transform(
    mode: ResponseMode,
    session_id: Option<String>,
    file: Option<PathBuf>,
) -> Result<(), String> {
    let session_id = match session_id {
        Some(id) if gateway::is_valid_session_id(&id) => id,
        Some(_) => {
            return Err(format!(
                "--session-id: {}",
                Code::InvalidSessionId.message()
            ))
        }
        None => {
            let mut seed = [0u8; 16];
            getrandom::getrandom(&mut seed).map_err(|e| format!("random source: {e}"))?;
            gateway::uuid_v4(seed)
        }
    };
    let mut input: Box<dyn Read> = match &file {
        Some(path) if path.as_os_str() != "-" => {
            Box::new(std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        _ => Box::new(io::stdin().lock()),
    };
    let mut transformer = Transformer::new(
        TransformerOptions {
            mode,
            body_kind: OriginBodyKind::EventStream,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            keepalive_ms: None,
            session_id,
            meter: false,
        },
        0,
    );
    let mut out = io::stdout().lock();
    let mut write = |bytes: &[u8]| -> Result<(), String> {
        out.write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing: {e}"))
    };
    let mut buffer = vec![0u8; 64 * 1024];
    let failure = loop {
        match input.read(&mut buffer) {
            Ok(0) => break None,
            Ok(read) => {
                write(&transformer.push(Bytes::copy_from_slice(&buffer[..read]), 0))?;
                if transformer.is_finished() {
                    // A limit or `[DONE]` ended the stream: the gateway stops reading too.
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
    };
    // A read failure ends the stream as the origin's breaking off does.
    let error = failure
        .as_ref()
        .map(|_| StreamError::new(Code::OriginStreamFailed));
    write(&transformer.finish(error))?;
    match failure {
        Some(e) => Err(format!("reading the stream: {e}")),
        None => Ok(()),
    }
}

fn listen_addr(flag: Option<SocketAddr>) -> Result<SocketAddr, String> {
    if let Some(addr) = flag {
        return Ok(addr);
    }
    match agent_edge::config::LISTEN_ADDR.read(&|name| std::env::var(name).ok()) {
        Some(value) => value.parse().map_err(|_| {
            "invalid configuration: LISTEN_ADDR: expected host:port, like 127.0.0.1:8787".to_owned()
        }),
        None => Ok(SocketAddr::from(([127, 0, 0, 1], 8787))),
    }
}

async fn serve(listen: Option<SocketAddr>) -> Result<(), String> {
    let addr = listen_addr(listen)?;
    native::serve(|name| std::env::var(name).ok(), addr).await
}

/// The gateway `dev` runs: in this process, or a tool's child process.
enum DevGateway {
    Native(native::GatewayServer),
    Child(targets::Running),
}

async fn dev(
    listen: Option<SocketAddr>,
    word_delay: Duration,
    target: Target,
    repository: Option<PathBuf>,
) -> Result<(), String> {
    let addr = listen_addr(listen)?;
    // A missing tool stops `dev` before anything starts.
    let tool = match target {
        Target::Native => None,
        _ => {
            let repository =
                repository.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
            Some(Tool::find(target, &repository)?)
        }
    };
    let mut stop = StopSignals::listen()?;
    // Bound here for every target: a busy address fails alike, and port 0
    // becomes a free port the Worker or Lambda tool then listens on.
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

    // Checked here whichever target reads them.
    let config = Config::from_lookup(|name| vars.get(name).cloned()).map_err(|e| e.to_string())?;
    let ui = config.ui;
    let (gateway, url, runs_as) = match &tool {
        None => {
            let server = native::spawn(config, gateway_listener, native::stderr_log())
                .await
                .map_err(|e| format!("gateway: {e}"))?;
            let url = server.url();
            (
                DevGateway::Native(server),
                url,
                "the native server, in this process",
            )
        }
        Some(tool) => {
            drop(gateway_listener);
            let url = tool.url(gateway_addr);
            let mut child = tool.start(gateway_addr, &vars)?;
            eprintln!(
                "agent-edge dev: starting {} (the first start builds it: minutes)",
                tool.describe()
            );
            tokio::select! {
                ready = child.wait_until_ready(&url) => ready?,
                () = stop.received() => {
                    eprintln!("agent-edge dev: stopping {}", child.name());
                    return Ok(());
                }
            }
            (DevGateway::Child(child), url, tool.describe())
        }
    };

    let token = issuer_server.mint("demo-user", Duration::from_secs(3600), SystemTime::now());
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
  runs as            {runs_as}
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

The agents you may use, the second one, and ending a session:
  curl {url}/agents -H "Authorization: Bearer $TOKEN"
  curl -N {url}/agents/{second}/invocations -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{{"prompt":"hello","response":"transformed"}}'
  curl -X DELETE {url}/sessions/<session id> -H "Authorization: Bearer $TOKEN"

{page}
Press Ctrl-C to stop. One JSON log line per request follows.
"#,
        origin = origin.addr,
        issuer = issuer_server.issuer_url(),
        second = DEV_SECOND_AGENT,
    );
    match gateway {
        DevGateway::Native(server) => {
            stop.received().await;
            server.drain().await;
        }
        DevGateway::Child(mut child) => {
            tokio::select! {
                () = stop.received() => {}
                status = child.exited() => {
                    return Err(format!("{} stopped ({status}); its output is above", child.name()));
                }
            }
            eprintln!("agent-edge dev: stopping {}", child.name());
            // Dropping it stops its process group.
            drop(child);
        }
    }
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

/// The name of `dev`'s second agent.
const DEV_SECOND_AGENT: &str = "second";

/// The gateway's configuration for `dev`: the same variables a deployment sets.
fn dev_vars(
    settings: &DemoOriginSettings,
    origin: SocketAddr,
    issuer: SocketAddr,
) -> HashMap<&'static str, String> {
    let issuer_url = format!("http://{issuer}");
    HashMap::from([
        ("AGENT_RUNTIME_ARN", settings.runtime_arn.clone()),
        // A second agent, so that the chat page offers a choice.
        (
            "AGENTS",
            serde_json::json!({ DEV_SECOND_AGENT: {
                "arn": demo_origin::DEMO_SECOND_RUNTIME_ARN,
                "description": "the second runtime of the demo agent"
            }})
            .to_string(),
        ),
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
        ("JWT_ISSUER", issuer_url.clone()),
        ("JWT_AUDIENCE", issuer::DEV_AUDIENCE.to_owned()),
        ("CORS_ALLOW_ORIGINS", "http://localhost:3000".to_owned()),
        // The chat page's "Get a development token" button.
        ("DEV_TOKEN_URL", format!("{issuer_url}/token")),
    ])
}
