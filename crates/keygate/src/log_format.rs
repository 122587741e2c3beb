//! The text log's format: the access line written directly, every other event as
//! tracing-subscriber's default formatter writes it.
//!
//! One access line is written per request, so its cost is paid on every ping: the default
//! formatter spends about 6,000 instructions a line on span lookups, style wrappers (even with
//! colours off) and a visitor that quotes and escapes (docs/benchmarks.md). The access line has no
//! span, no colour and only fields that need no escaping (the access log never puts request text
//! other than a sanitized path in it), so it is written here in the default formatter's own
//! layout: `2026-12-07T15:40:01.123456Z  INFO keygate::access: answered request_id=... status=200`.

use std::fmt;
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// The text format: [`keygate_server::access_log::TARGET`] written plainly, the rest by `inner`.
#[derive(Debug)]
pub struct Text {
    inner: Format<Full>,
}

impl Text {
    /// With colours when `ansi` (a terminal): the access line is then left to the default
    /// formatter, which colours it.
    #[must_use]
    pub fn new(ansi: bool) -> Self {
        Self { inner: Format::default().with_ansi(ansi) }
    }
}

impl<S> FormatEvent<S, DefaultFields> for Text
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, DefaultFields>,
        mut w: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() != keygate_server::access_log::TARGET || w.has_ansi_escapes() {
            return self.inner.format_event(ctx, w, event);
        }
        // The line is put together on the stack and written at once: one call through the
        // writer's `dyn Write` instead of one per piece. A line that does not fit (it cannot: every
        // field is bounded) is left to the default formatter rather than cut.
        let mut line = Line::new();
        if write_line(&mut line, event).is_err() {
            return self.inner.format_event(ctx, w, event);
        }
        w.write_str(line.as_str())
    }
}

/// Writes the access line `event` to `line`, in the default formatter's layout.
fn write_line(line: &mut Line, event: &tracing::Event<'_>) -> fmt::Result {
    use fmt::Write as _;
    let meta = event.metadata();
    write_now(line)?;
    // The default formatter pads the level to five characters after one space.
    // (Level names are four or five letters.)
    let level = meta.level().as_str();
    line.write_str(if level.len() < 5 { "  " } else { " " })?;
    line.write_str(level)?;
    line.write_char(' ')?;
    line.write_str(meta.target())?;
    line.write_char(':')?;
    let mut fields = Fields { w: line, result: Ok(()) };
    event.record(&mut fields);
    fields.result?;
    line.write_char('\n')
}

/// A line being written, on the stack.
struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

/// The longest access line written plainly: the line's fields are bounded (ids of at most 64
/// characters, a method of at most 19, a path template or a shown path of at most 67) and come to
/// about 250 bytes.
const LINE_MAX: usize = 1024;

impl Line {
    fn new() -> Self {
        Self { buf: [0; LINE_MAX], len: 0 }
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the bytes are UTF-8.
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or("")
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes fields as ` name=value` (the message as ` value`), unquoted.
struct Fields<'a> {
    w: &'a mut Line,
    result: fmt::Result,
}

impl Fields<'_> {
    fn name(&mut self, field: &Field) -> fmt::Result {
        use fmt::Write as _;
        if field.name() != "message" {
            self.w.write_char(' ')?;
            self.w.write_str(field.name())?;
            self.w.write_char('=')
        } else {
            self.w.write_char(' ')
        }
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use fmt::Write as _;
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| write!(self.w, "{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        use fmt::Write as _;
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| self.w.write_str(value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        use fmt::Write as _;
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| self.w.write_str(itoa::Buffer::new().format(value)));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        use fmt::Write as _;
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| self.w.write_str(itoa::Buffer::new().format(value)));
        }
    }
}

/// The current UTC time as the default formatter writes it: `2026-12-07T15:40:01.123456Z`.
fn write_now(w: &mut Line) -> fmt::Result {
    use fmt::Write as _;
    let now = time::OffsetDateTime::now_utc();
    let (y, m, d) = (now.year(), u8::from(now.month()), now.day());
    let (h, min, s, us) = (now.hour(), now.minute(), now.second(), now.microsecond());
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (0..width).rev() {
            buf[at + i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
            v /= 10;
        }
    };
    put(0, 4, u32::try_from(y).unwrap_or(0));
    put(5, 2, u32::from(m));
    put(8, 2, u32::from(d));
    put(11, 2, u32::from(h));
    put(14, 2, u32::from(min));
    put(17, 2, u32::from(s));
    put(20, 6, us);
    w.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn a_line_that_would_not_fit_is_refused_whole_and_never_cut() {
        let mut line = Line::new();
        line.write_str("answered").unwrap();
        assert_eq!(line.as_str(), "answered");
        assert!(line.write_str(&"x".repeat(LINE_MAX)).is_err());
        assert_eq!(line.as_str(), "answered", "a refused piece leaves the line as it was");
        let mut at_most = Line::new();
        at_most.write_str(&"y".repeat(LINE_MAX)).unwrap();
        assert_eq!(at_most.as_str().len(), LINE_MAX);
    }
}
