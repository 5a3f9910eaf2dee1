//! `acidic`: the command line over the host library. This file only sets up
//! logging, parses the flags and maps the outcome to an exit code; `cli/`
//! holds the flags (`args`), what each command does (`commands`) and how
//! results are shown (`render`).

use std::process::ExitCode;

use clap::Parser;

use acidic::Error;

mod cli;

use cli::commands::exit;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::args::Cli::try_parse() {
        Ok(cli) => cli,
        // With --json, a usage error is JSON on stderr too (help and
        // --version are output, printed as clap prints them).
        Err(e) if e.use_stderr() && std::env::args().any(|a| a == "--json") => {
            let text = e.render().to_string();
            let text = text.trim();
            let error = serde_json::json!({
                "error": text.strip_prefix("error: ").unwrap_or(text),
                "exit_code": 2,
            });
            eprintln!("{error}");
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    // Postgres warns "there is no transaction in progress" when the driver
    // rolls back a transaction a failed COMMIT (a conflict) already ended:
    // noise, kept out of the log unless ACIDIC_LOG names the target itself.
    const NOTICES: &str = "sqlx::postgres::notice";
    const DEFAULT: &str = "warn,acidic::guest=info";
    let asked = std::env::var("ACIDIC_LOG").unwrap_or_else(|_| DEFAULT.into());
    let with_notices = |spec: &str| {
        if spec.contains(NOTICES) {
            spec.to_string()
        } else {
            format!("{spec},{NOTICES}=error")
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(with_notices(&asked))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(with_notices(DEFAULT)));
    use tracing_subscriber::prelude::*;
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let log = if cli.command.logs_json() {
        log.json().boxed()
    } else {
        log.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .boxed()
    };
    // The bench counts the statements sent to the database; nothing else does.
    let statements = matches!(cli.command, cli::args::Command::Bench { .. })
        .then(acidic::bench::statements::layer);
    tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(statements)
        .init();

    let json = cli.json;
    if !cli.command.runs_long() {
        // A closed pipe (`acidic runs list | head -1`) ends a short command
        // quietly, as it does any Unix tool, rather than failing a write.
        // Long-running ones keep ignoring it: their sockets never raise it
        // (Rust sends with MSG_NOSIGNAL), and a closed log pipe must not
        // stop a worker mid-step.
        // SAFETY: sets a signal's disposition to its default before any
        // other thread could rely on it; no handler runs Rust code.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli::commands::run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = match e.downcast_ref::<Error>() {
                Some(Error::Locked { .. }) => exit::LOCKED,
                Some(Error::ArgsMismatch { .. }) => exit::MISMATCH,
                _ => exit::ERROR,
            };
            let message = message(&e);
            if json {
                // With --json, errors are JSON too (on stderr, like the text form).
                let error = serde_json::json!({ "error": message, "exit_code": code });
                eprintln!("{error}");
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(code)
        }
    }
}

/// `e` and its causes, each said once: a cause whose words the message
/// already holds (an error that shows its source) adds nothing.
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}
