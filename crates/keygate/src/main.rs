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
#[cfg(feature = "server")]
mod log_format;
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
    // One access line per request: written by a background thread, so a request never waits on
    // a write(2) to stderr. Not lossy: when the thread falls behind, writers wait rather than
    // drop lines. The thread writes every line waiting for it at once (it flushes its buffer
    // whenever it has caught up), so a busy server makes one write(2) per batch, not per line.
    // The guard flushes what is left when `main` returns.
    let (stderr, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    match format {
        // Fields at the top level (not under "fields"), so shippers index `status`, `path`, ...
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(stderr)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        LogFormat::Text => {
            use tracing_subscriber::layer::SubscriberExt as _;
            use tracing_subscriber::util::SubscriberInitExt as _;
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let layer = tracing_subscriber::fmt::layer().with_writer(stderr).with_ansi(ansi);
            // The access line written plainly (log_format), everything else as by default.
            #[cfg(feature = "server")]
            let layer = layer.event_format(log_format::Text::new(ansi));
            tracing_subscriber::registry().with(filter).with(layer).init();
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("keygate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let scanning = matches!(cli.command, cli::Command::Scan(_));
    match runtime.block_on(cli::run(cli)) {
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
