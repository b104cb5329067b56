//! The `keygate` command: `serve`, `check-config`, `admin-token create`
//! (offline), and the admin API client (`keys`, `accounts`, `plans`,
//! `webhooks`, `audit`, `admin-token list|delete`), and `completions`/`man`,
//! generated from these same definitions so they never drift from the
//! parser.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use keygate::admin::tokens::TokenView;
use keygate::cli::{self, AccountsCommand, AuditArgs, ClientArgs, KeysCommand, PlansCommand, WebhooksCommand};
use keygate::config::{Config, LogFormat};
use keygate::logging::Logging;
use keygate::server::{Gateway, ProxyRuntime};
use keygate::service::{CreateToken, Service, ServiceError};
use keygate::store::{AuditContext, Role, Store};

#[derive(Parser)]
#[command(name = "keygate", version, about = "API-key authentication gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy and admin listeners.
    Serve {
        /// The YAML configuration file.
        #[arg(long, default_value = "config/keygate.yaml")]
        config: PathBuf,
        /// Log format, overriding `log.format`.
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
    },
    /// Validate a configuration file and exit (0 when valid, 2 when not).
    CheckConfig {
        #[arg(long, default_value = "config/keygate.yaml")]
        config: PathBuf,
    },
    /// Manage API keys through the admin API.
    Keys {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage accounts through the admin API.
    Accounts {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Manage plans (limits pooled over an account's keys) through the admin API.
    Plans {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: PlansCommand,
    },
    /// Manage webhooks (signed events to receivers) and read their deliveries log through the admin API.
    Webhooks {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Admin tokens. `create` writes to the store directly, so a fresh
    /// install can mint its first owner token with no server running;
    /// `list` and `delete` go through the admin API (owner token).
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
    /// Read the audit trail through the admin API, newest first.
    Audit {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        filters: AuditArgs,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on standard output.
    Man,
}

#[derive(Subcommand)]
enum AdminTokenCommand {
    /// Mint an admin token in the store named by the config file (offline).
    Create {
        #[arg(long, default_value = "config/keygate.yaml")]
        config: PathBuf,
        /// A name to recognise the token by.
        #[arg(long)]
        name: String,
        /// What the token may do.
        #[arg(long, value_enum, default_value = "owner")]
        role: Role,
        /// Confine the token to this account.
        #[arg(long)]
        account: Option<String>,
        /// Print `{token, secret}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List admin tokens through the admin API (owner token).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete an admin token through the admin API (owner token); it stops working at once.
    Delete {
        /// Admin token id (tok_…)
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: configuration is valid", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Serve { config, log_format } => serve(&config, log_format.as_deref()),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "keygate", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man => match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the manual page: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Keys { client, command } => {
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(cli::run_keys(&client, command)))
        }
        Command::Accounts { client, command } => {
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(cli::run_accounts(&client, command)))
        }
        Command::Plans { client, command } => {
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(cli::run_plans(&client, command)))
        }
        Command::Webhooks { client, command } => {
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(cli::run_webhooks(&client, command)))
        }
        Command::AdminToken { command: AdminTokenCommand::Create { config, name, role, account, json } } => runtime()
            .map_or(ExitCode::FAILURE, |rt| {
                rt.block_on(create_admin_token(&config, CreateToken { name, role, account_id: account }, json))
            }),
        Command::AdminToken { command: AdminTokenCommand::List { client } } => {
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(cli::run_admin_token_list(&client)))
        }
        Command::AdminToken { command: AdminTokenCommand::Delete { id, client } } => {
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(cli::run_admin_token_delete(&client, &id)))
        }
        Command::Audit { client, filters } => {
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(cli::run_audit(&client, filters)))
        }
    }
}

/// Mints a token through the same service as `POST /v1/admin-tokens`, so
/// the same checks hold with no server running.
async fn create_admin_token(path: &std::path::Path, req: CreateToken, json: bool) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let store = match Store::connect(&config.store).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(3);
        }
    };
    let audit =
        AuditContext { actor_id: "cli".into(), actor_name: "keygate admin-token create".into(), ..Default::default() };
    let service = Service::offline(store, &config.keys);
    let created = service.create_admin_token(req, &audit).await;
    service.store().close().await;
    match created {
        Ok(issued) => {
            let (token, secret) = (issued.record, issued.secret);
            if json {
                let out = serde_json::json!({ "token": TokenView::from(token), "secret": secret.expose() });
                println!("{out}");
            } else {
                eprintln!("created {} admin token {} ({})", token.role.as_str(), token.id, token.name);
                eprintln!("warning: this token is shown only once and cannot be shown again; store it now");
                println!("{}", secret.expose());
            }
            ExitCode::SUCCESS
        }
        Err(ServiceError::Invalid { field, message }) => {
            // The request's field names, as the options that set them.
            let option = if field == "account_id" { "account" } else { field.as_str() };
            eprintln!("error: --{option}: {message}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

fn serve(path: &std::path::Path, log_format: Option<&str>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let forced_format = log_format.map(|f| if f == "json" { LogFormat::Json } else { LogFormat::Text });
    let logging = Arc::new(Logging::init(&config.log, forced_format));
    // The proxy gets one single-threaded runtime per core (see
    // `ProxyRuntime::Threads`); the admin port and background work share
    // one more on this thread.
    let workers = match config.proxy.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        // Watching SIGHUP from here on takes away its default effect (ending
        // the process), so a reload sent while the store is still being
        // connected is not a stop; the reloader below watches it for real.
        #[cfg(unix)]
        let _ignore_hangup_while_starting = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let token = std::env::var("KEYGATE_ADMIN_TOKEN").ok();
        let gateway = match Gateway::start_with(&config, token.as_deref(), ProxyRuntime::Threads(workers)).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "cannot start");
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        if token.is_none() {
            tracing::warn!("KEYGATE_ADMIN_TOKEN is not set: the admin API accepts no token");
        }
        // The proxy's threads are running: the rest yields to them.
        let lowered = keygate::priority::lower_background();
        tracing::debug!(threads = lowered, nice = keygate::priority::BACKGROUND_NICE, "background threads lowered");
        // SIGHUP reloads the file; what the environment overrode at start
        // (`KEYGATE_*`) it overrides again.
        let reloader = gateway.config_reloader(path.to_path_buf(), Some(logging));
        if let Err(e) = reloader.spawn_on_hangup(gateway.shutdown()) {
            tracing::warn!(error = %e, "cannot watch SIGHUP: the configuration cannot be reloaded live");
        }
        gateway.shutdown().on_signal();
        gateway.wait().await;
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn admin_token_list_and_delete_take_the_client_options() {
        for line in [
            "keygate admin-token list --admin-url http://h:1 --json",
            "keygate admin-token delete tok_1 --token t",
            "keygate admin-token create --name ci --role viewer --json",
            "keygate audit --action key.revoke --json",
        ] {
            Cli::try_parse_from(line.split_whitespace()).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        assert!(Cli::try_parse_from("keygate admin-token delete".split_whitespace()).is_err());
    }
}
