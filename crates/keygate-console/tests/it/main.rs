//! keygate-console integration tests: the real server on port 0 (keygate-testkit), driven over
//! HTTP like a browser would, and in headless Chromium.

mod browser;
mod refusals;
mod support;
