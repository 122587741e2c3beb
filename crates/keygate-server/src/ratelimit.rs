//! Binance's rate limits: request weight and raw requests per client address (IPv6 per /64),
//! new orders per account, 429 with `Retry-After` when a limit is reached, and a 418 ban, growing
//! from 2 minutes to 3 days, for clients that keep going after their 429s.
//!
//! Windows are fixed and aligned to the epoch (a minute window resets at every full minute, a day
//! window at 00:00 UTC), as Binance's counters are. Time comes from the injected clock, so tests
//! move it. Memory is bounded: at most [`MAX_TRACKED`] addresses and as many accounts.
//!
//! Several nodes (issue #13): given shared counters ([`RateLimiter::sharing`], `serve
//! --redis-url`), weight, raw requests and orders are also counted there, one call per count, and
//! every node's totals decide; this node's own counts are kept beside them as a floor and decide
//! alone while the shared counters do not answer (see `keygate_service::counters`). Bans stay
//! each node's own, from the refusals it gave.
//!
//! What counts (see docs/demo.md for the operator's view):
//! - every request to the exchange API (not `/healthz`, `/readyz` or the console) adds its
//!   weight (from the endpoint table) to its address's weight windows and one to its
//!   raw-request windows, before anything else is done with it, signed or not;
//! - a request that finds its address over a limit is refused with 429 -1003 and costs no work;
//!   refused requests still count, as on Binance, so the counter keeps climbing until the window
//!   resets;
//! - more than [`BanPolicy::after_refusals`] refused requests in a row earn a ban (418 -1003);
//!   the first lasts [`BanPolicy::first_secs`], each further one within
//!   [`BanPolicy::forget_after_secs`] of the last twice as long, up to [`BanPolicy::max_secs`];
//! - a new order (`POST /api/v3/order`, not `/order/test`; the endpoint table says which) counts
//!   against its account once the request has verified; an order over the limit is refused with
//!   429 -1015 and never reaches the engine. One the exchange then refuses (an error answer) is
//!   given back, as Binance counts successfully placed orders. Orders are not given back when they
//!   fill (Binance's older, simpler rule; its newer "unfilled order count" decrements on fills).

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use keygate_proto::AccountId;
use keygate_service::counters::{SharedCounters, WindowAdd};
use serde::Deserialize;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

/// Most addresses (and, separately, accounts) tracked at once. When the table is full (checked at
/// most once a second), entries whose windows have all passed and whose bans are forgotten are
/// dropped, then the least recently seen entries never refused or banned lately; a new address
/// that still finds no room is refused (429), and nobody's counters are reset.
pub const MAX_TRACKED: usize = 100_000;

/// The unit of a limit's interval, as `exchangeInfo.rateLimits` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Interval {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl Interval {
    /// Binance's name, e.g. `MINUTE`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Second => "SECOND",
            Self::Minute => "MINUTE",
            Self::Hour => "HOUR",
            Self::Day => "DAY",
        }
    }

    /// The letter in header names (`X-MBX-USED-WEIGHT-1M`).
    #[must_use]
    pub const fn letter(self) -> char {
        match self {
            Self::Second => 'S',
            Self::Minute => 'M',
            Self::Hour => 'H',
            Self::Day => 'D',
        }
    }

    const fn millis(self) -> u64 {
        match self {
            Self::Second => 1_000,
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }
}

/// One limit: at most `limit` per `interval_num` `interval`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The unit.
    pub interval: Interval,
    /// How many units one window spans (10 in "100 orders per 10 SECOND").
    pub interval_num: u32,
    /// The most allowed in one window.
    pub limit: u32,
}

impl Window {
    /// A window of `interval_num` `interval`s allowing `limit`.
    #[must_use]
    pub const fn new(interval: Interval, interval_num: u32, limit: u32) -> Self {
        Self { interval, interval_num, limit }
    }

    fn span_ms(&self) -> u64 {
        self.interval.millis().saturating_mul(u64::from(self.interval_num.max(1)))
    }

    /// The suffix Binance derives header names from: `1M`, `10S`, `1D`.
    #[must_use]
    pub fn suffix(&self) -> String {
        format!("{}{}", self.interval_num, self.interval.letter())
    }

    /// "1 MINUTE", as Binance's messages say it.
    fn describe(&self) -> String {
        format!("{} {}", self.interval_num, self.interval.name())
    }
}

/// How refusals turn into bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BanPolicy {
    /// Refused (429) requests in a row an address may send before it is banned.
    pub after_refusals: u32,
    /// The first ban's length, in seconds (Binance: 2 minutes).
    pub first_secs: u64,
    /// The longest ban, in seconds (Binance: 3 days).
    pub max_secs: u64,
    /// A ban ending longer than this ago is forgotten: the next ban is a first one again.
    pub forget_after_secs: u64,
}

impl Default for BanPolicy {
    fn default() -> Self {
        Self { after_refusals: 10, first_secs: 120, max_secs: 3 * 86_400, forget_after_secs: 86_400 }
    }
}

/// The rate limits a server enforces. Held in [`crate::AppState`]; `exchangeInfo.rateLimits` is
/// built from it, so what clients read is what is enforced.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Off: nothing is counted, no limit headers are sent, `rateLimits` is empty (for load
    /// benchmarks).
    pub enabled: bool,
    /// `REQUEST_WEIGHT` windows, per client address.
    pub request_weight: Vec<Window>,
    /// `RAW_REQUESTS` windows, per client address.
    pub raw_requests: Vec<Window>,
    /// `ORDERS` windows, per account.
    pub orders: Vec<Window>,
    /// When refusals become bans.
    pub ban: BanPolicy,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self::binance()
    }
}

impl RateLimitConfig {
    /// Binance Spot's published defaults: 6,000 weight per minute, 61,000 requests per 5 minutes,
    /// 100 orders per 10 seconds and 200,000 per day.
    #[must_use]
    pub fn binance() -> Self {
        Self {
            enabled: true,
            request_weight: vec![Window::new(Interval::Minute, 1, 6_000)],
            raw_requests: vec![Window::new(Interval::Minute, 5, 61_000)],
            orders: vec![Window::new(Interval::Second, 10, 100), Window::new(Interval::Day, 1, 200_000)],
            ban: BanPolicy::default(),
        }
    }

    /// No limits at all.
    #[must_use]
    pub fn off() -> Self {
        Self { enabled: false, ..Self::binance() }
    }

    /// The same windows with every limit multiplied by `factor` (the demo uses 10).
    #[must_use]
    pub fn scaled(mut self, factor: u32) -> Self {
        for w in self.request_weight.iter_mut().chain(&mut self.raw_requests).chain(&mut self.orders) {
            w.limit = w.limit.saturating_mul(factor);
        }
        self
    }

    /// Reads a TOML file's text; keys left out keep Binance's defaults.
    ///
    /// # Errors
    /// Unknown keys, wrong types, or a window with a zero `interval_num` or `limit`.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        for w in config.request_weight.iter().chain(&config.raw_requests).chain(&config.orders) {
            if w.interval_num == 0 || w.limit == 0 {
                return Err(format!("a window needs interval_num and limit above 0 (got {w:?})"));
            }
        }
        if config.ban.first_secs == 0 || config.ban.max_secs < config.ban.first_secs {
            return Err("ban.first_secs must be above 0 and at most ban.max_secs".to_owned());
        }
        Ok(config)
    }

    /// `exchangeInfo.rateLimits` entries: (type, interval, interval_num, limit).
    #[must_use]
    pub fn published(&self) -> Vec<(&'static str, &'static str, u32, u32)> {
        if !self.enabled {
            return Vec::new();
        }
        let kind = |t: &'static str, ws: &[Window]| {
            ws.iter().map(move |w| (t, w.interval.name(), w.interval_num, w.limit)).collect::<Vec<_>>()
        };
        let mut out = kind("REQUEST_WEIGHT", &self.request_weight);
        out.extend(kind("ORDERS", &self.orders));
        out.extend(kind("RAW_REQUESTS", &self.raw_requests));
        out
    }
}

/// A refused request: HTTP 429 or 418 with a Binance body and `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over a `REQUEST_WEIGHT` or `RAW_REQUESTS` limit: 429 -1003.
    TooManyRequests {
        /// Binance's message naming the limit.
        msg: String,
        /// Seconds until the window resets.
        retry_after: u64,
    },
    /// Banned: 418 -1003.
    Banned {
        /// When the ban ends, ms since the epoch.
        until_ms: u64,
        /// Seconds until then.
        retry_after: u64,
    },
    /// Over an `ORDERS` limit: 429 -1015.
    TooManyOrders {
        /// Binance's message naming the limit.
        msg: String,
        /// Seconds until the window resets.
        retry_after: u64,
    },
}

impl Refusal {
    /// Seconds the client should wait.
    #[must_use]
    pub fn retry_after(&self) -> u64 {
        match self {
            Self::TooManyRequests { retry_after, .. }
            | Self::Banned { retry_after, .. }
            | Self::TooManyOrders { retry_after, .. } => *retry_after,
        }
    }
}

/// Counts in a set of fixed windows: (window index, count) per configured window.
#[derive(Debug, Clone, Default)]
struct Counts(Vec<(u64, u32)>);

impl Counts {
    /// Brings every window to `now`'s, resetting passed ones.
    fn roll(&mut self, windows: &[Window], now: u64) {
        self.0.resize(windows.len(), (0, 0));
        for (c, w) in self.0.iter_mut().zip(windows) {
            let index = now / w.span_ms();
            if c.0 != index {
                *c = (index, 0);
            }
        }
    }

    fn add(&mut self, n: u32) {
        for c in &mut self.0 {
            c.1 = c.1.saturating_add(n);
        }
    }

    /// The first window whose count is above its limit.
    fn over<'w>(&self, windows: &'w [Window]) -> Option<&'w Window> {
        self.0.iter().zip(windows).find(|(c, w)| c.1 > w.limit).map(|(_, w)| w)
    }

    /// Whether every window has passed by `now`.
    fn stale(&self, windows: &[Window], now: u64) -> bool {
        self.0.iter().zip(windows).all(|(c, w)| c.0 != now / w.span_ms())
    }
}

/// Per-address state.
#[derive(Debug, Clone, Default)]
struct IpState {
    weight: Counts,
    raw: Counts,
    /// Requests refused in a row.
    refused: u32,
    /// End of the current or last ban (0: never banned).
    banned_until: u64,
    /// How many bans in a row (each one doubling the next), within `forget_after`.
    level: u32,
}

/// Milliseconds from `now` to the end of `w`'s current window, as whole seconds (at least 1).
fn secs_to_window_end(w: &Window, now: u64) -> u64 {
    let span = w.span_ms();
    let end = (now / span + 1).saturating_mul(span);
    end.saturating_sub(now).div_ceil(1_000).max(1)
}

/// One tracked entry and when it was last used (ms), for evicting the least recently seen.
#[derive(Debug, Default)]
struct Entry<V> {
    value: V,
    seen: u64,
}

/// A bounded table of counters.
#[derive(Debug)]
struct Table<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Most entries held at once ([`MAX_TRACKED`]; smaller in tests).
    capacity: usize,
    /// When a full table was last pruned: pruning walks every entry, so a table that stays full
    /// (every entry live) is pruned at most once a second, not on every request.
    pruned_at: Option<u64>,
}

impl<K, V> Table<K, V> {
    fn with_capacity(capacity: usize) -> Self {
        Self { map: HashMap::new(), capacity: capacity.max(1), pruned_at: None }
    }
}

impl<K: Eq + Hash + Copy, V: Default> Table<K, V> {
    /// The entry for `key`, marked as seen at `now` (created when new: call
    /// [`Self::make_room`] first).
    fn touch(&mut self, key: K, now: u64) -> &mut V {
        let e = self.map.entry(key).or_default();
        e.seen = e.seen.max(now);
        &mut e.value
    }

    /// Makes room for one more entry at `now`; false when there is none. Drops the entries
    /// `forgettable` says hold nothing worth keeping (windows passed, no ban to remember); if
    /// that is not enough, evicts the least recently seen entries `evictable` allows, down to
    /// 90% of the capacity so the next walk is not needed for a while. Every other entry keeps
    /// its counters: a flood of new addresses cannot reset anyone's history.
    fn make_room(&mut self, now: u64, forgettable: impl Fn(&V) -> bool, evictable: impl Fn(&V) -> bool) -> bool {
        if self.map.len() < self.capacity {
            return true;
        }
        if self.pruned_at.is_some_and(|t| now < t.saturating_add(1_000)) {
            return false;
        }
        self.pruned_at = Some(now);
        self.map.retain(|_, e| !forgettable(&e.value));
        if self.map.len() >= self.capacity {
            let target = self.capacity - self.capacity.div_ceil(10);
            let mut candidates: Vec<(u64, K)> =
                self.map.iter().filter(|(_, e)| evictable(&e.value)).map(|(k, e)| (e.seen, *k)).collect();
            let excess = self.map.len().saturating_sub(target).min(candidates.len());
            if excess > 0 {
                if excess < candidates.len() {
                    candidates.select_nth_unstable_by_key(excess - 1, |c| c.0);
                }
                for (_, k) in &candidates[..excess] {
                    self.map.remove(k);
                }
            }
        }
        self.map.len() < self.capacity
    }
}

/// The counters behind the limits, shared by every request.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    ips: Mutex<Table<IpAddr, IpState>>,
    accounts: Mutex<Table<AccountId, Counts>>,
    /// The counters every node shares, when there are some: they decide while they answer.
    shared: Option<SharedCounters>,
}

/// What a request used so far in each window (`REQUEST_WEIGHT`, or `ORDERS` for
/// [`RateLimiter::admit_order`]), for the response headers. The window itself, not its suffix
/// formatted as a string: usage is reported on every answer.
pub type Usage = Vec<(Window, u32)>;

/// The legacy header, the first weight window's usage.
const X_MBX_USED_WEIGHT: HeaderName = HeaderName::from_static("x-mbx-used-weight");

/// `prefix` + the window's lowercase suffix (`x-mbx-used-weight-1m`): Binance's own windows
/// are named without formatting anything, others as configured.
fn window_header(prefix: &'static str, w: &Window) -> Option<HeaderName> {
    let known = match (prefix, w.interval_num, w.interval) {
        ("x-mbx-used-weight-", 1, Interval::Minute) => Some("x-mbx-used-weight-1m"),
        ("x-mbx-order-count-", 10, Interval::Second) => Some("x-mbx-order-count-10s"),
        ("x-mbx-order-count-", 1, Interval::Day) => Some("x-mbx-order-count-1d"),
        _ => None,
    };
    match known {
        Some(name) => Some(HeaderName::from_static(name)),
        None => HeaderName::try_from(format!("{prefix}{}", w.suffix().to_ascii_lowercase())).ok(),
    }
}

/// Writes `X-MBX-USED-WEIGHT-<window>` for each weight window, and the legacy
/// `X-MBX-USED-WEIGHT` for the first, as Binance does on every answer.
pub fn write_weight_headers(h: &mut HeaderMap, usage: &Usage) {
    for (i, (window, used)) in usage.iter().enumerate() {
        let v = HeaderValue::from(*used);
        if i == 0 {
            h.insert(X_MBX_USED_WEIGHT, v.clone());
        }
        if let Some(name) = window_header("x-mbx-used-weight-", window) {
            h.insert(name, v);
        }
    }
}

/// Writes `X-MBX-ORDER-COUNT-<window>` for each `ORDERS` window, on an order's answer.
pub fn write_order_count_headers(h: &mut HeaderMap, usage: &Usage) {
    for (window, count) in usage {
        if let Some(name) = window_header("x-mbx-order-count-", window) {
            h.insert(name, HeaderValue::from(*count));
        }
    }
}

impl RateLimiter {
    /// A limiter enforcing `config`.
    #[must_use]
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_capacity(config, MAX_TRACKED)
    }

    /// A limiter tracking at most `capacity` addresses and as many accounts (tests use a small
    /// one to fill it).
    #[must_use]
    pub fn with_capacity(config: RateLimitConfig, capacity: usize) -> Self {
        Self {
            config,
            ips: Mutex::new(Table::with_capacity(capacity)),
            accounts: Mutex::new(Table::with_capacity(capacity)),
            shared: None,
        }
    }

    /// Counts in `shared` too (every node's requests and orders), when given: their totals
    /// decide while they answer, this node's own counts when they do not.
    #[must_use]
    pub fn sharing(mut self, shared: Option<SharedCounters>) -> Self {
        self.shared = shared;
        self
    }

    /// Whether the limits are counted across nodes right now: shared counters are configured
    /// and answered their last call.
    #[must_use]
    pub fn shared_now(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.status().reachable)
    }

    /// The limits in force.
    #[must_use]
    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Counts a request of `weight` from `ip` at `now_ms` and decides whether it may proceed.
    /// Returns the weight used per window (the 1-minute window and 26, for
    /// `X-MBX-USED-WEIGHT-1M: 26`) either way;
    /// empty when limits are off.
    pub async fn admit(&self, ip: IpAddr, weight: u32, now_ms: u64) -> (Usage, Result<(), Refusal>) {
        self.count(ip, weight, 1, now_ms).await
    }

    /// [`Self::admit`] without waiting, when this node decides alone (no shared counters are
    /// configured): the weight middleware then answers without boxing a future. `None` when
    /// shared counters are configured; the caller must use [`Self::admit`].
    #[must_use]
    pub fn admit_here(&self, ip: IpAddr, weight: u32, now_ms: u64) -> Option<(Usage, Result<(), Refusal>)> {
        if !self.config.enabled {
            return Some((Vec::new(), Ok(())));
        }
        if self.shared.is_some() {
            return None;
        }
        Some(self.decide(crate::client_ip::counting_key(ip), weight, 1, now_ms, None))
    }

    /// Charges `ip` more weight for a request [`Self::admit`] already counted (weight found only
    /// once its body was read), without counting another raw request. Refuses as `admit` does.
    pub async fn charge_more(&self, ip: IpAddr, weight: u32, now_ms: u64) -> (Usage, Result<(), Refusal>) {
        self.count(ip, weight, 0, now_ms).await
    }

    /// Adds `weight` and `raw` requests to `ip`'s windows and decides: by every node's totals
    /// when shared counters answer, by this node's own otherwise. Bans are this node's: each
    /// node bans an address that keeps going after its own refusals.
    async fn count(&self, ip: IpAddr, weight: u32, raw: u32, now_ms: u64) -> (Usage, Result<(), Refusal>) {
        let c = &self.config;
        if !c.enabled {
            return (Vec::new(), Ok(()));
        }
        let key = crate::client_ip::counting_key(ip);
        let shared = match &self.shared {
            None => None,
            Some(shared) => {
                // A banned address costs no round trip, and counts nowhere, as before.
                if let Some(banned) = self.banned(key, now_ms) {
                    return banned;
                }
                shared.add(&self.ip_windows(key, weight, raw, now_ms), false).await.map(|counts| counts.values)
            }
        };
        self.decide(key, weight, raw, now_ms, shared)
    }

    /// The deciding half of [`Self::count`], for the counting key `key`: adds to this node's
    /// windows and decides by `shared` (every node's totals, when shared counters answered) or
    /// by this node's own counts.
    fn decide(
        &self,
        key: IpAddr,
        weight: u32,
        raw: u32,
        now_ms: u64,
        shared: Option<Vec<u32>>,
    ) -> (Usage, Result<(), Refusal>) {
        let c = &self.config;
        let mut ips = self.ips.lock().unwrap_or_else(PoisonError::into_inner);
        let forget = c.ban.forget_after_secs.saturating_mul(1_000);
        // Whether an entry holds nothing worth keeping: a ban long enough past to forget, and
        // every window passed.
        let ban_remembered = |s: &IpState| s.banned_until > 0 && s.banned_until.saturating_add(forget) > now_ms;
        let forgettable = |s: &IpState| {
            !ban_remembered(s) && s.weight.stale(&c.request_weight, now_ms) && s.raw.stale(&c.raw_requests, now_ms)
        };
        // Whether an entry may be evicted to make room: never one that was refused or banned
        // within `forget_after` (its escalation must not be reset by a flood of new addresses).
        let evictable = |s: &IpState| s.refused == 0 && !ban_remembered(s);
        if !ips.map.contains_key(&key) && !ips.make_room(now_ms, forgettable, evictable) {
            // No room even after pruning: every entry is live and was refused or banned lately.
            // A new address is refused rather than served uncounted.
            let msg = "Too many requests; too many clients are being limited. Please retry later.".to_owned();
            return (Vec::new(), Err(Refusal::TooManyRequests { msg, retry_after: 1 }));
        }
        let s = ips.touch(key, now_ms);
        s.weight.roll(&c.request_weight, now_ms);
        s.raw.roll(&c.raw_requests, now_ms);
        if s.banned_until > now_ms {
            let retry_after = (s.banned_until - now_ms).div_ceil(1_000).max(1);
            return (usage(c, &s.weight), Err(Refusal::Banned { until_ms: s.banned_until, retry_after }));
        }
        s.weight.add(weight);
        s.raw.add(raw);
        // Every node's totals, in the order of `ip_windows`: weight windows, then raw ones; never
        // below this node's own count (a Redis that restarted empty forgets the others' counts,
        // not this node's).
        let (weight_now, raw_now) = match &shared {
            Some(values) if values.len() == c.request_weight.len() + c.raw_requests.len() => {
                let (w, r) = values.split_at(c.request_weight.len());
                (
                    at_least(totals(&c.request_weight, w, now_ms), &s.weight),
                    at_least(totals(&c.raw_requests, r, now_ms), &s.raw),
                )
            }
            _ => (s.weight.clone(), s.raw.clone()),
        };
        let over = weight_now
            .over(&c.request_weight)
            .map(|w| (w, format!("Too much request weight used; current limit is {} request weight per {}. Please use WebSocket Streams for live updates to avoid polling the API.", w.limit, w.describe())))
            .or_else(|| {
                raw_now.over(&c.raw_requests).map(|w| {
                    (w, format!("Too many requests; current limit is {} requests per {}.", w.limit, w.describe()))
                })
            });
        let Some((w, msg)) = over else {
            s.refused = 0;
            return (usage(c, &weight_now), Ok(()));
        };
        s.refused = s.refused.saturating_add(1);
        if s.refused <= c.ban.after_refusals {
            let retry_after = secs_to_window_end(w, now_ms);
            return (usage(c, &weight_now), Err(Refusal::TooManyRequests { msg, retry_after }));
        }
        // Kept going after being told to stop: banned, longer each time.
        s.level = if s.banned_until > 0 && s.banned_until.saturating_add(forget) > now_ms {
            s.level.saturating_add(1)
        } else {
            0
        };
        let first = c.ban.first_secs.saturating_mul(1_000);
        let length = first.checked_shl(s.level.min(63)).unwrap_or(u64::MAX).min(c.ban.max_secs.saturating_mul(1_000));
        s.banned_until = now_ms.saturating_add(length);
        s.refused = 0;
        let retry_after = length.div_ceil(1_000).max(1);
        (usage(c, &weight_now), Err(Refusal::Banned { until_ms: s.banned_until, retry_after }))
    }

    /// The refusal of an address this node has banned, if it has.
    fn banned(&self, key: IpAddr, now_ms: u64) -> Option<(Usage, Result<(), Refusal>)> {
        let ips = self.ips.lock().unwrap_or_else(PoisonError::into_inner);
        let s = &ips.map.get(&key)?.value;
        (s.banned_until > now_ms).then(|| {
            let retry_after = (s.banned_until - now_ms).div_ceil(1_000).max(1);
            let mut weight = s.weight.clone();
            weight.roll(&self.config.request_weight, now_ms);
            (usage(&self.config, &weight), Err(Refusal::Banned { until_ms: s.banned_until, retry_after }))
        })
    }

    /// The shared counters of `key`'s windows at `now_ms` (weight windows, then raw ones), each
    /// named by its window so that a new window is a new counter.
    fn ip_windows(&self, key: IpAddr, weight: u32, raw: u32, now_ms: u64) -> Vec<WindowAdd> {
        let c = &self.config;
        let weight = c.request_weight.iter().map(|w| shared_window("w", &key, w, weight, now_ms));
        weight.chain(c.raw_requests.iter().map(|w| shared_window("r", &key, w, raw, now_ms))).collect()
    }

    /// Counts a new order for `account` at `now_ms`. Returns the order count per `ORDERS` window
    /// (the 10-second window and 3, for `X-MBX-ORDER-COUNT-10S: 3`), or the refusal when one window is full (the
    /// refused order is not counted). With shared counters that answer, every node's orders
    /// count, checked and added in one step.
    pub async fn admit_order(&self, account: AccountId, now_ms: u64) -> (Usage, Result<OrderCounted, Refusal>) {
        let c = &self.config;
        if !c.enabled || c.orders.is_empty() {
            return (Vec::new(), Ok(OrderCounted { shared: false }));
        }
        let shared = match &self.shared {
            // This node's own count is a floor: an order it would refuse by itself is refused
            // without asking (a Redis that restarted empty forgets the others' orders, not ours).
            Some(_) if self.own_orders_full(account, now_ms) => None,
            Some(shared) => shared.add(&self.order_windows(account, now_ms), true).await,
            None => None,
        };
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        // Accounts are authenticated (each costs a key); when none is stale the least recently
        // seen make way, and an order that still finds no room is counted here nowhere.
        let room =
            accounts.map.contains_key(&account) || accounts.make_room(now_ms, |s| s.stale(&c.orders, now_ms), |_| true);
        if let Some(shared) = shared.filter(|s| s.values.len() == c.orders.len()) {
            // Every node's count decided; this node's own share is kept for an outage.
            let counts = totals(&c.orders, &shared.values, now_ms);
            if shared.added && room {
                let s = accounts.touch(account, now_ms);
                s.roll(&c.orders, now_ms);
                s.add(1);
            }
            let full = (!shared.added)
                .then(|| counts.0.iter().zip(&c.orders).find(|(n, w)| n.1 >= w.limit).map(|(_, w)| *w))
                .flatten();
            return order_verdict(c, &counts, full, now_ms, true);
        }
        if !room {
            return (Vec::new(), Ok(OrderCounted { shared: false }));
        }
        let s = accounts.touch(account, now_ms);
        s.roll(&c.orders, now_ms);
        let full = s.0.iter().zip(&c.orders).find(|(n, w)| n.1 >= w.limit).map(|(_, w)| *w);
        if full.is_none() {
            s.add(1);
        }
        let counts = s.clone();
        order_verdict(c, &counts, full, now_ms, false)
    }

    /// Whether this node's own count of `account`'s orders fills a window at `now_ms`.
    fn own_orders_full(&self, account: AccountId, now_ms: u64) -> bool {
        let accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        accounts.map.get(&account).is_some_and(|e| {
            let mut s = e.value.clone();
            s.roll(&self.config.orders, now_ms);
            s.0.iter().zip(&self.config.orders).any(|(n, w)| n.1 >= w.limit)
        })
    }

    /// The shared counters of `account`'s `ORDERS` windows at `now_ms`.
    fn order_windows(&self, account: AccountId, now_ms: u64) -> Vec<WindowAdd> {
        self.config.orders.iter().map(|w| shared_window("o", &account.0, w, 1, now_ms)).collect()
    }
}

/// The usage headers' values of `weight`: one per `REQUEST_WEIGHT` window.
fn usage(c: &RateLimitConfig, weight: &Counts) -> Usage {
    c.request_weight.iter().zip(&weight.0).map(|(w, n)| (*w, n.1)).collect()
}

/// Counts read from shared counters, as this module keeps them: the window index of `now_ms`
/// beside each value.
fn totals(windows: &[Window], values: &[u32], now_ms: u64) -> Counts {
    Counts(windows.iter().zip(values).map(|(w, v)| (now_ms / w.span_ms(), *v)).collect())
}

/// `shared`, with each window's count raised to `own`'s where `own` counted more.
fn at_least(mut shared: Counts, own: &Counts) -> Counts {
    for (s, o) in shared.0.iter_mut().zip(&own.0) {
        if s.0 == o.0 {
            s.1 = s.1.max(o.1);
        }
    }
    shared
}

/// A shared counter of `kind` (`w` weight, `r` raw requests, `o` orders) for `who` in window `w`
/// at `now_ms`: its name holds the window's length and index, and it is kept for the window's
/// span and a minute more (nodes' clocks differ a little).
fn shared_window(kind: &str, who: &dyn std::fmt::Display, w: &Window, by: u32, now_ms: u64) -> WindowAdd {
    let span = w.span_ms();
    WindowAdd {
        key: format!("rl:{kind}:{who}:{}:{}", w.suffix(), now_ms / span),
        by,
        limit: w.limit,
        ttl_ms: span.saturating_add(60_000),
    }
}

/// Where an admitted order was counted, for [`RateLimiter::refund_order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct OrderCounted {
    /// In the shared counters too (they answered), not only in this node's.
    pub shared: bool,
}

/// The answer to an order: its counts per window, refused when `full` names a full window.
fn order_verdict(
    c: &RateLimitConfig,
    counts: &Counts,
    full: Option<Window>,
    now_ms: u64,
    shared: bool,
) -> (Usage, Result<OrderCounted, Refusal>) {
    let usage = c.orders.iter().zip(&counts.0).map(|(w, n)| (*w, n.1)).collect();
    match full {
        None => (usage, Ok(OrderCounted { shared })),
        Some(w) => {
            let msg = format!("Too many new orders; current limit is {} orders per {}.", w.limit, w.describe());
            (usage, Err(Refusal::TooManyOrders { msg, retry_after: secs_to_window_end(&w, now_ms) }))
        }
    }
}

impl RateLimiter {
    /// Gives back an order counted for `account` at `at_ms` that did not go through (a bad
    /// parameter, insufficient balance): Binance counts successfully placed orders. Given back
    /// where [`RateLimiter::admit_order`] counted it (`counted`): here, and in the shared counters
    /// if they took it. Windows that have moved on since are unaffected (a shared counter is
    /// named by its window).
    pub async fn refund_order(&self, account: AccountId, at_ms: u64, counted: OrderCounted) {
        if let Some(shared) = self.shared.as_ref().filter(|_| counted.shared) {
            let keys: Vec<String> = self.order_windows(account, at_ms).into_iter().map(|w| w.key).collect();
            shared.subtract(&keys, 1).await;
        }
        let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = accounts.map.get_mut(&account) {
            for (c, w) in s.value.0.iter_mut().zip(&self.config.orders) {
                if c.0 == at_ms / w.span_ms() {
                    c.1 = c.1.saturating_sub(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_header_names_are_the_windows_suffixes_whether_named_in_advance_or_formatted() {
        for prefix in ["x-mbx-used-weight-", "x-mbx-order-count-"] {
            for interval in [Interval::Second, Interval::Minute, Interval::Hour, Interval::Day] {
                for n in [1, 10, 30] {
                    let w = Window::new(interval, n, 100);
                    let expected = format!("{prefix}{}", w.suffix().to_ascii_lowercase());
                    assert_eq!(window_header(prefix, &w).unwrap().as_str(), expected);
                }
            }
        }
        let mut h = HeaderMap::new();
        let usage = vec![(Window::new(Interval::Minute, 1, 6000), 26), (Window::new(Interval::Hour, 1, 9), 7)];
        write_weight_headers(&mut h, &usage);
        assert_eq!(h["x-mbx-used-weight"], "26");
        assert_eq!(h["x-mbx-used-weight-1m"], "26");
        assert_eq!(h["x-mbx-used-weight-1h"], "7");
        let mut h = HeaderMap::new();
        write_order_count_headers(
            &mut h,
            &vec![(Window::new(Interval::Second, 10, 50), 3), (Window::new(Interval::Day, 1, 9), 4)],
        );
        assert_eq!(
            (&h["x-mbx-order-count-10s"], &h["x-mbx-order-count-1d"]),
            (&"3".parse().unwrap(), &"4".parse().unwrap())
        );
    }

    fn small() -> RateLimitConfig {
        RateLimitConfig {
            enabled: true,
            request_weight: vec![Window::new(Interval::Minute, 1, 10)],
            raw_requests: vec![Window::new(Interval::Minute, 5, 1_000)],
            orders: vec![Window::new(Interval::Second, 10, 2), Window::new(Interval::Day, 1, 3)],
            ban: BanPolicy { after_refusals: 2, ..BanPolicy::default() },
        }
    }

    #[tokio::test]
    async fn bans_grow_from_two_minutes_and_are_capped_at_three_days() {
        let l = RateLimiter::new(small());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut now = 0;
        let mut lengths = Vec::new();
        for _ in 0..14 {
            // Fresh window: 10 weight fits, then two 429s, then a ban.
            now = (now / 60_000 + 1) * 60_000;
            assert!(l.admit(ip, 10, now).await.1.is_ok());
            assert!(matches!(l.admit(ip, 1, now).await.1, Err(Refusal::TooManyRequests { .. })));
            assert!(matches!(l.admit(ip, 1, now).await.1, Err(Refusal::TooManyRequests { .. })));
            let Err(Refusal::Banned { until_ms, .. }) = l.admit(ip, 1, now).await.1 else { panic!("not banned") };
            lengths.push((until_ms - now) / 1_000);
            now = until_ms;
        }
        assert_eq!(&lengths[..4], &[120, 240, 480, 960]);
        assert_eq!(*lengths.last().unwrap(), 3 * 86_400);
    }

    #[tokio::test]
    async fn a_ban_long_past_is_forgotten() {
        let l = RateLimiter::new(small());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let ban = async |now: u64| {
            for _ in 0..3 {
                let _ = l.admit(ip, 11, now).await;
            }
            match l.admit(ip, 1, now).await.1 {
                Err(Refusal::Banned { until_ms, .. }) => until_ms - now,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(ban(60_000).await, 120_000);
        assert_eq!(ban(2 * 86_400_000 + 60_000).await, 120_000);
    }

    #[tokio::test]
    async fn orders_count_per_account_and_refused_ones_do_not_count() {
        let l = RateLimiter::new(small());
        let (a, b) = (AccountId(1), AccountId(2));
        let windows = |usage: Usage| usage.into_iter().map(|(w, n)| (w.suffix(), n)).collect::<Vec<_>>();
        assert_eq!(windows(l.admit_order(a, 0).await.0), vec![("10S".to_owned(), 1), ("1D".to_owned(), 1)]);
        assert!(l.admit_order(a, 1).await.1.is_ok());
        let (usage, refused) = l.admit_order(a, 9_000).await;
        assert_eq!(usage[0].1, 2);
        assert_eq!(refused.unwrap_err().retry_after(), 1);
        assert!(l.admit_order(b, 9_000).await.1.is_ok());
        assert!(l.admit_order(a, 10_000).await.1.is_ok());
        let Err(Refusal::TooManyOrders { msg, .. }) = l.admit_order(a, 10_001).await.1 else { panic!() };
        assert_eq!(msg, "Too many new orders; current limit is 3 orders per 1 DAY.");
    }

    #[tokio::test]
    async fn a_full_table_drops_stale_entries_then_the_least_recently_seen_ones() {
        let ip = |i: u32| IpAddr::from(i.to_be_bytes());
        let used = |(usage, _): (Usage, Result<(), Refusal>)| usage.first().map(|u| u.1);
        // Full of entries whose windows have all passed: they go.
        let l = RateLimiter::with_capacity(small(), 10);
        for i in 0..10 {
            assert!(l.admit(ip(i), 1, 0).await.1.is_ok());
        }
        assert_eq!(used(l.admit(ip(10), 1, 300_000).await), Some(1));
        assert_eq!(l.ips.lock().unwrap().map.len(), 1);
        // Full of live entries: only the least recently seen make way (down to 90%), the others
        // keep their counts.
        let l = RateLimiter::with_capacity(small(), 10);
        for i in 0..10 {
            assert!(l.admit(ip(i), 1, u64::from(i)).await.1.is_ok());
        }
        assert!(l.admit(ip(10), 1, 10).await.1.is_ok());
        assert_eq!(l.ips.lock().unwrap().map.len(), 10);
        assert!(!l.ips.lock().unwrap().map.contains_key(&ip(0)));
        assert_eq!(used(l.admit(ip(1), 1, 11).await), Some(2));
        // Full again within the second: no second walk; the newcomer is refused, not served
        // uncounted, and nobody is reset.
        let (usage, verdict) = l.admit(ip(11), 1, 500).await;
        assert!(usage.is_empty());
        assert!(matches!(verdict, Err(Refusal::TooManyRequests { retry_after: 1, .. })));
        assert_eq!(used(l.admit(ip(1), 1, 500).await), Some(3));
    }

    #[tokio::test]
    async fn a_full_table_never_forgets_refused_or_banned_addresses() {
        let ip = |i: u32| IpAddr::from(i.to_be_bytes());
        let l = RateLimiter::with_capacity(small(), 4);
        // 0: banned; 1: refused once (a second refusal, then a ban, would follow); 2, 3: quiet.
        for _ in 0..3 {
            let _ = l.admit(ip(0), 11, 0).await;
        }
        assert!(matches!(l.admit(ip(0), 1, 0).await.1, Err(Refusal::Banned { .. })));
        assert!(matches!(l.admit(ip(1), 11, 1).await.1, Err(Refusal::TooManyRequests { .. })));
        assert!(l.admit(ip(2), 1, 2).await.1.is_ok());
        assert!(l.admit(ip(3), 1, 3).await.1.is_ok());
        // A flood of new addresses evicts the quiet ones only.
        assert!(l.admit(ip(4), 1, 10).await.1.is_ok());
        assert!(!l.ips.lock().unwrap().map.contains_key(&ip(2)));
        assert!(matches!(l.admit(ip(0), 1, 20).await.1, Err(Refusal::Banned { .. })));
        assert!(matches!(l.admit(ip(1), 1, 20).await.1, Err(Refusal::TooManyRequests { .. })));
        assert!(matches!(l.admit(ip(1), 1, 20).await.1, Err(Refusal::Banned { .. })));
        // Only limited addresses left (3 and 4 are refused now): newcomers are refused until
        // room is made, and the bans stand.
        assert!(l.admit(ip(3), 20, 30).await.1.is_err());
        assert!(l.admit(ip(4), 20, 30).await.1.is_err());
        for (i, now) in [(5, 2_000), (6, 2_500), (7, 4_000)] {
            let (usage, verdict) = l.admit(ip(i), 1, now).await;
            assert!(usage.is_empty() && verdict.is_err(), "{i}");
        }
        assert!(matches!(l.admit(ip(0), 1, 4_000).await.1, Err(Refusal::Banned { .. })));
        assert!(matches!(l.admit(ip(1), 1, 4_000).await.1, Err(Refusal::Banned { .. })));
        // Once the windows pass and the bans are forgotten, entries go and newcomers are counted.
        let later = 4 * 86_400_000;
        assert!(l.admit(ip(8), 1, later).await.1.is_ok());
        assert_eq!(l.ips.lock().unwrap().map.len(), 1);
    }

    #[tokio::test]
    async fn off_counts_nothing() {
        let l = RateLimiter::new(RateLimitConfig::off());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(l.admit(ip, 10_000, 0).await, (Vec::new(), Ok(())));
        }
        assert!(RateLimitConfig::off().published().is_empty());
    }

    #[tokio::test]
    async fn toml_overrides_what_it_names_and_keeps_the_rest() {
        let c = RateLimitConfig::from_toml(
            "[[request_weight]]\ninterval = \"MINUTE\"\ninterval_num = 1\nlimit = 60000\n[ban]\nafter_refusals = 3\n",
        )
        .unwrap();
        assert_eq!(c.request_weight, vec![Window::new(Interval::Minute, 1, 60_000)]);
        assert_eq!(c.orders, RateLimitConfig::binance().orders);
        assert_eq!(c.ban.after_refusals, 3);
        assert_eq!(c.ban.first_secs, 120);
        assert!(RateLimitConfig::from_toml("typo = 1").is_err());
        assert!(RateLimitConfig::from_toml("[[orders]]\ninterval = \"SECOND\"\ninterval_num = 0\nlimit = 1").is_err());
        assert_eq!(RateLimitConfig::binance().scaled(10).request_weight[0].limit, 60_000);
    }
}
