//! The server-rendered pages, one module per family. Every form posts to a URL here and works
//! without JavaScript; the one script only adds a copy button next to a secret.
//!
//! The route table below is the whole map of the console's pages; each family's module holds its
//! handlers, its templates' structs and its forms.

mod apps;
mod audit;
mod auth;
mod keys;
mod layout;
mod notifications;
mod password;
mod two_factor;
pub(crate) mod wallet;

// What the JSON API shares with the pages.
pub(crate) use audit::recent_audit;
pub(crate) use two_factor::maybe_step_up;

use crate::Console;
use audit::{audit_csv, audit_jsonl, audit_page};
use auth::{login, login_page, login_totp, login_totp_page, logout, signup, signup_page};
use axum::Router;
use axum::routing::{get, post};
use keys::{
    create_key, edit_key, edit_page, keys_page, reconfirm, remove_address, revoke_all, revoke_all_page, revoke_key,
    revoke_page, set_policy,
};
use layout::{css, home, js, not_found};
use password::{change_password, password_page};
use two_factor::{
    regenerate_recovery_codes, step_up, step_up_page, two_factor_confirm, two_factor_disable, two_factor_enroll,
    two_factor_enroll_page, two_factor_page,
};

/// Every page's route, with its handler; the JSON API's routes are in `crate::api`.
pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .route("/console/signup", get(signup_page).post(signup))
        .route("/console/login", get(login_page).post(login))
        .route("/console/login/totp", get(login_totp_page).post(login_totp))
        .route("/console/logout", post(logout))
        .route("/console/2fa", get(two_factor_page))
        .route("/console/2fa/enroll", get(two_factor_enroll_page).post(two_factor_enroll))
        .route("/console/2fa/confirm", post(two_factor_confirm))
        .route("/console/2fa/disable", post(two_factor_disable))
        .route("/console/2fa/recovery-codes", post(regenerate_recovery_codes))
        .route("/console/step-up", get(step_up_page).post(step_up))
        .route("/console/password", get(password_page).post(change_password))
        .route("/console/keys", get(keys_page).post(create_key))
        .route("/console/keys/revoke-all", get(revoke_all_page).post(revoke_all))
        .route("/console/keys/reconfirm", post(reconfirm))
        .route("/console/key-policy", post(set_policy))
        .route("/console/keys/{id}", get(edit_page).post(edit_key))
        .route("/console/keys/{id}/revoke", get(revoke_page).post(revoke_key))
        .route("/console/keys/{id}/remove-address", post(remove_address))
        .route("/oauth/authorize", get(apps::authorize_page).post(apps::authorize_answer))
        .route("/console/apps", get(apps::apps_page))
        .route("/console/apps/register", post(apps::register))
        .route("/console/apps/{client_id}/disconnect", post(apps::disconnect))
        .route("/console/audit", get(audit_page))
        .route("/console/notifications", get(notifications::page))
        .route("/console/notifications/webhooks", post(notifications::create))
        .route("/console/notifications/webhooks/{id}/{action}", post(notifications::act))
        .route("/console/notifications/webhooks/{id}/deliveries/{delivery}/redeliver", post(notifications::redeliver))
        .route("/console/audit.csv", get(audit_csv))
        .route("/console/audit.jsonl", get(audit_jsonl))
        .route("/console/wallet", get(wallet::page))
        .route("/console/wallet/faucet", post(wallet::faucet_form))
        .route("/console/wallet/{file}", get(wallet::csv))
        .route("/console/{*rest}", get(not_found))
}
