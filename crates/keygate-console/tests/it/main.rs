//! keygate-console integration tests: the real server on port 0 (keygate-testkit), driven over
//! HTTP like a browser would, and in headless Chromium.

// Tests fail loudly by design; the browser test says on stderr why it skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod apps;
mod browser;
mod browser_pages;
mod flows;
mod holds;
mod hygiene;
mod issue18;
mod notifications;
mod pages;
mod refusals;
mod support;
