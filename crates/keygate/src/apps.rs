//! `keygate apps`: the operator's side of connected apps (issue #15): register, list, show,
//! verify, suspend (the kill switch), resume, delete, and allow owners to register apps from the
//! console. Each is an admin request, so a running server applies it at once (a suspended app's
//! keys fail on their next request, on every node).

use crate::context::Context;
use crate::output;
use clap::Subcommand;
use keygate_service::admin::AdminRequest;
use keygate_service::apps::NewApp;
use serde_json::Value;

/// App commands.
#[derive(Debug, Subcommand)]
pub enum AppsCmd {
    /// Register an app and print its client id (and, for a confidential client, its client
    /// secret, this once: only its hash is stored). Apps start unverified.
    Register {
        /// Display name on the consent page.
        #[arg(long)]
        name: String,
        /// Home page (https).
        #[arg(long)]
        homepage: String,
        /// The publisher's domain, shown on the consent page.
        #[arg(long = "publisher-domain")]
        publisher_domain: String,
        /// A redirect URI, matched exactly (https, or http://127.0.0.1:PORT/... for native apps,
        /// whose port may vary); repeat for several.
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// The most it may ask for: `read` or `read,trade` (never withdraw).
        #[arg(long = "max-permissions", default_value = "read")]
        max_permissions: String,
        /// `confidential` (a server that keeps a client secret) or `public` (PKCE only).
        #[arg(long = "client-type", default_value = "confidential")]
        client_type: String,
        /// Optional logo URL (https).
        #[arg(long)]
        logo: Option<String>,
        #[command(flatten)]
        format: crate::cli::Format,
    },
    /// List apps (with --all, deleted ones too).
    List {
        /// Include deleted apps.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        format: crate::cli::Format,
    },
    /// Show one app.
    Show {
        /// Client id.
        client_id: String,
        #[command(flatten)]
        format: crate::cli::Format,
    },
    /// Mark an app verified (its consent page says so), or not with --no.
    Verify {
        /// Client id.
        client_id: String,
        /// Remove the mark.
        #[arg(long)]
        no: bool,
        #[command(flatten)]
        format: crate::cli::Format,
    },
    /// Suspend an app: no new connections, and every key it holds is revoked at once.
    Suspend {
        /// Client id.
        client_id: String,
        #[command(flatten)]
        format: crate::cli::Format,
    },
    /// Let a suspended app be connected again (its revoked keys stay revoked).
    Resume {
        /// Client id.
        client_id: String,
        #[command(flatten)]
        format: crate::cli::Format,
    },
    /// Delete an app: as suspend, and it is no longer listed (its record stays for the audit).
    Delete {
        /// Client id.
        client_id: String,
        #[command(flatten)]
        format: crate::cli::Format,
    },
    /// Allow ACCOUNT to register apps from the console (with --no, stop allowing it).
    AllowDeveloper {
        /// Account name.
        account: String,
        /// Stop allowing it.
        #[arg(long)]
        no: bool,
    },
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn print_apps(v: &Value) -> anyhow::Result<()> {
    for a in v.as_array().into_iter().flatten() {
        outln!(
            "{}  {}  {}  {}  max {}  {}  {}  {}",
            text(&a["client_id"]),
            text(&a["name"]),
            text(&a["publisher_domain"]),
            if a["verified"].as_bool() == Some(true) { "verified" } else { "unverified" },
            text(&a["max_permissions"]),
            text(&a["client_type"]),
            text(&a["status"]),
            text(&a["redirect_uris"]),
        );
    }
    Ok(())
}

/// Runs an `apps` command.
///
/// # Errors
/// The admin request's refusal, or output errors.
pub async fn run(ctx: &Context, cmd: AppsCmd) -> anyhow::Result<()> {
    match cmd {
        AppsCmd::Register {
            name,
            homepage,
            publisher_domain,
            redirect_uris,
            max_permissions,
            client_type,
            logo,
            format,
        } => {
            let app = NewApp {
                name,
                homepage,
                publisher_domain,
                redirect_uris,
                max_permissions,
                client_type,
                logo_url: logo,
            };
            let v = ctx.dispatch(AdminRequest::AppRegister { app }).await?;
            if format.json {
                return output::json(&v);
            }
            outln!("client_id      {}", text(&v["client_id"]));
            if let Some(secret) = v["client_secret"].as_str() {
                outln!("client_secret  {secret}");
                outln!("The client secret is shown this once; only its hash is stored.");
            }
            Ok(())
        }
        AppsCmd::List { all, format } => {
            let v = ctx.dispatch(AdminRequest::AppList { all }).await?;
            if format.json { output::json(&v) } else { print_apps(&v) }
        }
        AppsCmd::Show { client_id, format } => {
            let v = ctx.dispatch(AdminRequest::AppShow { client_id }).await?;
            if format.json { output::json(&v) } else { print_apps(&Value::Array(vec![v])) }
        }
        AppsCmd::Verify { client_id, no, format } => {
            let v = ctx.dispatch(AdminRequest::AppVerify { client_id, verified: !no }).await?;
            if format.json { output::json(&v) } else { print_apps(&Value::Array(vec![v])) }
        }
        AppsCmd::Suspend { client_id, format } => kill(ctx, client_id, false, format.json).await,
        AppsCmd::Delete { client_id, format } => kill(ctx, client_id, true, format.json).await,
        AppsCmd::Resume { client_id, format } => {
            let v = ctx.dispatch(AdminRequest::AppResume { client_id }).await?;
            if format.json { output::json(&v) } else { print_apps(&Value::Array(vec![v])) }
        }
        AppsCmd::AllowDeveloper { account, no } => {
            ctx.dispatch(AdminRequest::AppDeveloper { account: account.clone(), allowed: !no }).await?;
            if no {
                outln!("Account {account} may no longer register apps.");
            } else {
                outln!("Account {account} may register apps from the console (they start unverified).");
            }
            Ok(())
        }
    }
}

async fn kill(ctx: &Context, client_id: String, delete: bool, as_json: bool) -> anyhow::Result<()> {
    let v = ctx.dispatch(AdminRequest::AppSuspend { client_id: client_id.clone(), delete }).await?;
    if as_json {
        return output::json(&v);
    }
    let what = if delete { "deleted" } else { "suspended" };
    outln!("App {client_id} {what}; {} key(s) it held revoked.", text(&v["keys_revoked"]));
    Ok(())
}
