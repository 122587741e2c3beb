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
        write_now(&mut w)?;
        // The default formatter pads the level to five characters after one space.
        write!(w, " {:>5} {}:", meta.level().as_str(), meta.target())?;
        let mut fields = Fields { w: &mut w, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        w.write_char('\n')
    }
}

/// Writes fields as ` name=value` (the message as ` value`), unquoted.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn name(&mut self, field: &Field) -> fmt::Result {
        if field.name() != "message" {
            self.w.write_char(' ')?;
            self.w.write_str(field.name())?;
            self.w.write_char('=')
        } else {
            self.w.write_char(' ')
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| write!(self.w, "{value:?}"));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| self.w.write_str(value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| write!(self.w, "{value}"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| write!(self.w, "{value}"));
        }
    }
}

/// The current UTC time as the default formatter writes it: `2026-12-07T15:40:01.123456Z`.
fn write_now(w: &mut Writer<'_>) -> fmt::Result {
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
