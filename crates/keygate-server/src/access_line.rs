//! Access lines written directly: formatted by the access log itself and handed whole to the
//! process's log writer, instead of going through a `tracing` event.
//!
//! One line is written per request, so its cost is paid on every ping. As a `tracing` event it
//! cost about 3,500 instructions (docs/benchmarks.md): the dispatch, a visitor per field through
//! `dyn Visit`, the formatter's thread-local buffer, and a copy of the line into a channel for the
//! writer thread. Written here it is put together on the stack, in the layout the `tracing`
//! formatters would have given it ([`LogFormat::Text`] as tracing-subscriber's default formatter,
//! [`LogFormat::Json`] as its JSON formatter with the event's fields flattened), and appended to the
//! writer's buffer at once. It still obeys the log filter: a line is written only when
//! `tracing` would have written the event (`RUST_LOG=info,keygate::access=off` silences it).
//!
//! Every field is either a number or text that needs no escaping (ids of letters, digits and `-`,
//! an HTTP method token, a path template or a sanitized path, a fixed reason word); the JSON
//! writer escapes anyway, so a future field cannot break the line.

use std::fmt;
use std::sync::Arc;

/// The layout of log lines, as `serve --log-format` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-07T15:40:01.123456Z  INFO keygate::access: answered request_id=... status=200`
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Where whole log lines go: the process's log writer, shared with its `tracing` events so that
/// lines keep their order.
pub trait LineSink: Send + Sync + 'static {
    /// Appends one whole line (ending in `\n`).
    fn write_line(&self, line: &[u8]);
}

/// Writes access lines directly to a [`LineSink`] (see the module documentation). Without one
/// (`ServerConfig::access_log` left `None`, as in tests and when keygate is embedded) each access
/// line is a `tracing` event, formatted by whatever subscriber is installed.
#[derive(Clone)]
pub struct DirectLog {
    sink: Arc<dyn LineSink>,
    format: LogFormat,
}

impl fmt::Debug for DirectLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectLog").field("format", &self.format).finish_non_exhaustive()
    }
}

/// The fields of one access line, as [`crate::access_log`] gathers them.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    /// `X-Request-Id`.
    pub request_id: &'a str,
    /// The method, at most 19 bytes.
    pub method: &'a str,
    /// The route's template, or the sanitized path.
    pub path: &'a str,
    /// The answer's status.
    pub status: u16,
    /// Time to the answer's head.
    pub latency_us: u64,
    /// The well-formed key id, if the request named one.
    pub key: Option<&'a str>,
    /// The Binance error code answered.
    pub code: Option<i32>,
    /// The stable refusal word.
    pub reason: Option<&'a str>,
}

impl DirectLog {
    /// Access lines in `format`, appended to `sink`.
    #[must_use]
    pub fn new(sink: Arc<dyn LineSink>, format: LogFormat) -> Self {
        Self { sink, format }
    }

    /// Writes `line` with the current time; false if it was not written: a line that would not
    /// fit the stack buffer (it cannot: every field is bounded) is left to `tracing`, never cut.
    #[must_use]
    pub fn write(&self, line: &AccessLine<'_>, target: &str) -> bool {
        let mut buf = Line::default();
        let formatted = match self.format {
            LogFormat::Text => text(&mut buf, line, target),
            LogFormat::Json => json(&mut buf, line, target),
        };
        if formatted.is_ok() {
            self.sink.write_line(buf.as_bytes());
        }
        formatted.is_ok()
    }
}

/// The text line: the default formatter's layout, without colours.
fn text(w: &mut Line, line: &AccessLine<'_>, target: &str) -> fmt::Result {
    use fmt::Write as _;
    now(w)?;
    w.write_str("  INFO ")?;
    w.write_str(target)?;
    w.write_str(": answered request_id=")?;
    w.write_str(line.request_id)?;
    w.write_str(" method=")?;
    w.write_str(line.method)?;
    w.write_str(" path=")?;
    w.write_str(line.path)?;
    w.write_str(" status=")?;
    w.write_str(itoa::Buffer::new().format(line.status))?;
    w.write_str(" latency_us=")?;
    w.write_str(itoa::Buffer::new().format(line.latency_us))?;
    if let Some(key) = line.key {
        w.write_str(" key=")?;
        w.write_str(key)?;
    }
    if let Some(code) = line.code {
        w.write_str(" code=")?;
        w.write_str(itoa::Buffer::new().format(code))?;
    }
    if let Some(reason) = line.reason {
        w.write_str(" reason=")?;
        w.write_str(reason)?;
    }
    w.write_char('\n')
}

/// The JSON line: tracing-subscriber's JSON layout with the fields flattened.
fn json(w: &mut Line, line: &AccessLine<'_>, target: &str) -> fmt::Result {
    use fmt::Write as _;
    w.write_str("{\"timestamp\":\"")?;
    now(w)?;
    w.write_str("\",\"level\":\"INFO\",\"message\":\"answered\",\"request_id\":")?;
    json_str(w, line.request_id)?;
    w.write_str(",\"method\":")?;
    json_str(w, line.method)?;
    w.write_str(",\"path\":")?;
    json_str(w, line.path)?;
    w.write_str(",\"status\":")?;
    w.write_str(itoa::Buffer::new().format(line.status))?;
    w.write_str(",\"latency_us\":")?;
    w.write_str(itoa::Buffer::new().format(line.latency_us))?;
    if let Some(key) = line.key {
        w.write_str(",\"key\":")?;
        json_str(w, key)?;
    }
    if let Some(code) = line.code {
        w.write_str(",\"code\":")?;
        w.write_str(itoa::Buffer::new().format(code))?;
    }
    if let Some(reason) = line.reason {
        w.write_str(",\"reason\":")?;
        json_str(w, reason)?;
    }
    w.write_str(",\"target\":")?;
    json_str(w, target)?;
    w.write_str("}\n")
}

/// `s` as a JSON string: quoted, with `"`, `\` and control characters escaped.
fn json_str(w: &mut Line, s: &str) -> fmt::Result {
    use fmt::Write as _;
    w.write_char('"')?;
    let mut rest = s;
    while let Some(at) = rest.bytes().position(|b| b == b'"' || b == b'\\' || b < 0x20) {
        // The byte at `at` is ASCII, so both cuts are on character boundaries.
        let (head, tail) = rest.split_at(at);
        w.write_str(head)?;
        let b = tail.as_bytes().first().copied().unwrap_or(b' ');
        match b {
            b'"' => w.write_str("\\\"")?,
            b'\\' => w.write_str("\\\\")?,
            _ => write!(w, "\\u{b:04x}")?,
        }
        rest = tail.get(1..).unwrap_or("");
    }
    w.write_str(rest)?;
    w.write_char('"')
}

/// The current UTC time as tracing-subscriber writes it: `2026-12-07T15:40:01.123456Z`. The date
/// and time of day are worked out once a second per thread; within the second only the
/// microseconds are written anew.
fn now(w: &mut Line) -> fmt::Result {
    use fmt::Write as _;
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    #[allow(
        clippy::disallowed_methods,
        reason = "a log line's time is the wall clock's, as tracing-subscriber's is; tests control the service's clock"
    )]
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut head) = SECOND.get();
    if cached != secs {
        head = second(secs);
        SECOND.set((secs, head));
    }
    w.write_str(std::str::from_utf8(&head).map_err(|_| fmt::Error)?)?;
    let mut frac = *b".000000Z";
    let mut us = since.subsec_micros();
    for d in frac.get_mut(1..7).into_iter().flatten().rev() {
        *d = b'0' + u8::try_from(us % 10).unwrap_or(0);
        us /= 10;
    }
    w.write_str(std::str::from_utf8(&frac).map_err(|_| fmt::Error)?)
}

/// `secs` since the epoch as `2026-12-07T15:40:01`.
fn second(secs: u64) -> [u8; 19] {
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut buf = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (0..width).rev() {
            if let Some(d) = buf.get_mut(at + i) {
                *d = b'0' + u8::try_from(v % 10).unwrap_or(0);
            }
            v /= 10;
        }
    };
    put(0, 4, u32::try_from(t.year()).unwrap_or(0));
    put(5, 2, u32::from(u8::from(t.month())));
    put(8, 2, u32::from(t.day()));
    put(11, 2, u32::from(t.hour()));
    put(14, 2, u32::from(t.minute()));
    put(17, 2, u32::from(t.second()));
    buf
}

/// Text being put together on the stack, at most `N` bytes: a piece that would not fit is
/// refused whole (the text stays as it was), never cut.
pub(crate) struct StackLine<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for StackLine<N> {
    fn default() -> Self {
        Self { buf: [0; N], len: 0 }
    }
}

impl<const N: usize> StackLine<N> {
    /// Empties it.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// What was written.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// What was written, as text (only whole `&str`s are ever copied in).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for StackLine<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// An access line being written.
type Line = StackLine<LINE_MAX>;

/// The longest access line written directly: the fields are bounded (ids of at most 64
/// characters, a method of at most 19, a path template or a shown path of at most 67) and come to
/// about 300 bytes in JSON.
const LINE_MAX: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Sink(Mutex<Vec<u8>>);

    impl LineSink for Sink {
        fn write_line(&self, line: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(line);
        }
    }

    fn written(format: LogFormat, line: &AccessLine<'_>) -> String {
        let sink = Arc::new(Sink::default());
        assert!(DirectLog::new(sink.clone(), format).write(line, "keygate::access"));
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    const REFUSED: AccessLine<'static> = AccessLine {
        request_id: "0123456789abcdef0123456789abcdef",
        method: "GET",
        path: "/api/v3/account",
        status: 401,
        latency_us: 1234,
        key: Some("kgk_abc"),
        code: Some(-2015),
        reason: Some("IP_NOT_ALLOWED"),
    };

    #[test]
    fn text_and_json_lines_carry_every_field_and_leave_out_absent_ones() {
        let t = written(LogFormat::Text, &REFUSED);
        let (stamp, rest) = t.split_at(27);
        assert!(stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T', "{t}");
        assert_eq!(
            rest,
            "  INFO keygate::access: answered request_id=0123456789abcdef0123456789abcdef method=GET \
             path=/api/v3/account status=401 latency_us=1234 key=kgk_abc code=-2015 reason=IP_NOT_ALLOWED\n"
        );
        let j = written(LogFormat::Json, &AccessLine { key: None, code: None, reason: None, status: 200, ..REFUSED });
        assert!(j.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "answered");
        assert_eq!(v["target"], "keygate::access");
        assert_eq!(v["status"], 200);
        assert_eq!(v["latency_us"], 1234);
        assert_eq!(v["path"], "/api/v3/account");
        assert!(v.get("key").is_none() && v.get("code").is_none() && v.get("reason").is_none(), "{v}");
        assert_eq!(v["timestamp"].as_str().unwrap().len(), 27);
    }

    #[test]
    fn json_strings_are_escaped_and_the_timestamp_is_utc_to_the_microsecond() {
        let odd = AccessLine { path: "/a\"b\\c\u{1}", ..REFUSED };
        let v: serde_json::Value = serde_json::from_str(&written(LogFormat::Json, &odd)).unwrap();
        assert_eq!(v["path"], "/a\"b\\c\u{1}");
        assert_eq!(&second(0), b"1970-01-01T00:00:00");
        assert_eq!(&second(1_796_658_001), b"2026-12-07T15:40:01");
        let mut line = Line::default();
        now(&mut line).unwrap();
        let stamp = std::str::from_utf8(line.as_bytes()).unwrap();
        let parsed = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).unwrap();
        let off = (time::OffsetDateTime::now_utc() - parsed).whole_seconds().abs();
        assert!(off <= 2, "{stamp} is now");
    }

    #[test]
    fn a_line_that_would_not_fit_is_refused_whole_and_never_cut() {
        let mut line = Line::default();
        line.write_str("answered").unwrap();
        assert!(line.write_str(&"x".repeat(LINE_MAX)).is_err());
        assert_eq!(line.as_bytes(), b"answered", "a refused piece leaves the line as it was");
        let long = "p".repeat(LINE_MAX);
        let sink = Arc::new(Sink::default());
        let too_long = AccessLine { path: &long, ..REFUSED };
        assert!(!DirectLog::new(sink.clone(), LogFormat::Text).write(&too_long, "keygate::access"));
        assert!(sink.0.lock().unwrap().is_empty(), "nothing written");
    }
}
