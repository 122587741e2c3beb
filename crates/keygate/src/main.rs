//! `keygate`: the command line. Parses arguments, wires the layers together, prints results.
//! No domain rule lives here: key and account commands become admin requests, executed by the
//! running server through its admin socket, or, with no server running, by the same code on a
//! store this process opens itself.

// A command-line program's job is to print.
#![allow(clippy::print_stdout, clippy::print_stderr)]

/// Writes a line to standard output and returns its error with `?` instead of panicking as
/// `println!` does: `keygate audit list | head` closes the pipe early, and `main` ends quietly on
/// that, as ripgrep does.
macro_rules! outln {
    () => { outln!("") };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

/// `serve`'s banner: a reader that went away (`keygate serve | head -1`) must not stop the
/// server, so write errors are ignored rather than returned.
#[cfg(feature = "server")]
macro_rules! sayln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod apps;
mod cli;
mod context;
#[cfg(feature = "server")]
mod demo;
mod holder;
mod keygen;
mod log_writer;
mod output;
mod scan;
#[cfg(feature = "server")]
mod serve;

use clap::Parser as _;
use std::process::ExitCode;

/// How `serve` writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event, fields at the top level.
    Json,
}

/// mimalloc instead of glibc malloc: a request allocates a few dozen small blocks, and glibc's
/// malloc and free were about a third of the instructions of a ping (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let (default_level, format) = match &cli.command {
        #[cfg(feature = "server")]
        // PostgreSQL's notices (a migration table that already exists, each start) are not news.
        cli::Command::Serve(args) => ("info,sqlx::postgres::notice=warn", args.log_format),
        _ => ("warn", LogFormat::Text),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // One access line per request: every log line goes to one buffer that a background thread
    // writes in batches, so a request never waits on a write(2) to stderr. Not lossy: when the
    // thread falls behind, writers wait rather than drop lines (log_writer). The guard writes what
    // is left when `main` returns.
    let (writer, _flush_on_exit) = match log_writer::LogWriter::start(std::io::stderr()) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("keygate: cannot start the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    match format {
        // Fields at the top level (not under "fields"), so shippers index `status`, `path`, ...
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer.clone())
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        LogFormat::Text => {
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer.clone()).with_ansi(ansi).init()
        }
    }
    // Access lines are written straight to the same writer, in the same layout (see
    // keygate_server::access_line); on a terminal, where the formatter colours its lines, they
    // stay `tracing` events and are coloured too.
    #[cfg(feature = "server")]
    let access_log = (!ansi).then(|| {
        let format = match format {
            LogFormat::Text => keygate_server::access_line::LogFormat::Text,
            LogFormat::Json => keygate_server::access_line::LogFormat::Json,
        };
        keygate_server::access_line::DirectLog::new(std::sync::Arc::new(writer.clone()), format)
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keygate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scanning = matches!(cli.command, cli::Command::Scan(_));
    match runtime.block_on(cli::run(
        cli,
        #[cfg(feature = "server")]
        access_log,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing left to say to anyone.
        Err(e) if closed_pipe(&e) => ExitCode::SUCCESS,
        // Findings were printed; the status tells CI and pre-commit hooks.
        Err(e) if e.downcast_ref::<scan::SecretsFound>().is_some() => ExitCode::from(1),
        // `check` findings and `vault exec`'s command choose the status (holder.rs).
        Err(e) if e.downcast_ref::<holder::Exit>().is_some() => {
            let exit = e.downcast_ref::<holder::Exit>();
            if let Some(x) = exit.filter(|x| !x.message.is_empty()) {
                eprintln!("keygate: {}", x.message);
            }
            ExitCode::from(exit.map_or(1, |x| x.code))
        }
        Err(e) => {
            eprintln!("keygate: error: {e:#}");
            // `scan` keeps 1 for "a secret was found": 2 is "could not scan".
            if scanning { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// Whether an error is a write to a pipe whose reader has closed it.
pub(crate) fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
