//! The log's writer: whole lines from every thread appended to one buffer, written to stderr in
//! batches by a background thread.
//!
//! A server writes one access line per request, so what a line costs to hand over is paid on
//! every ping. tracing-appender's non-blocking writer copied each line into its own allocation
//! and sent it through a channel to its thread, which received and wrote them one at a time:
//! about 1,300 instructions a line (docs/benchmarks.md). Here a line is appended to a shared
//! buffer under a lock, and the thread takes the whole buffer at once. Lines keep the order in
//! which they were appended, `tracing` events and access lines ([`LineSink`]) alike.
//!
//! Nothing is dropped: when the buffer holds [`FULL`] bytes (stderr is not being read), writers
//! wait for the thread to take it. The thread is woken only when it is idle and a line arrives;
//! after writing a batch it lets lines gather for [`GATHER`] before looking again, so a busy server
//! makes one `write(2)` per batch and wakes nobody. A line waits at most that long before it is
//! written; the guard of [`LogWriter::start`] writes what is left when the process ends normally.

#[cfg(feature = "server")]
use keygate_server::access_line::LineSink;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Bytes the buffer holds before writers wait for the thread.
pub const FULL: usize = 4 << 20;

/// How long the thread lets lines gather after writing a batch.
pub const GATHER: Duration = Duration::from_millis(5);

/// How long the end of `main` waits for what is left to be written. stderr that is not being read
/// (a full pipe) would otherwise keep a stopping process alive until someone reads it; after this
/// long, what is left is given up, as tracing-appender's guard did.
pub const EXIT_WAIT: Duration = Duration::from_secs(1);

/// The writing end; cheap to clone.
#[derive(Debug, Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The thread waits on it for lines (while idle) or for the end.
    lines: Condvar,
    /// Writers wait on it for room when the buffer is full.
    room: Condvar,
}

#[derive(Debug, Default)]
struct State {
    buf: Vec<u8>,
    /// The thread is waiting on `lines`: the next line wakes it.
    idle: bool,
    /// The guard was dropped: write what is left and stop.
    closing: bool,
    /// The thread has stopped: lines are dropped rather than waited on forever.
    stopped: bool,
}

/// Writes what is left and stops the thread when dropped (at the end of `main`), waiting at most
/// [`EXIT_WAIT`].
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct FlushOnDrop {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogWriter {
    /// A writer whose lines a new thread writes to `out`.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(out: impl Write + Send + 'static) -> std::io::Result<(Self, FlushOnDrop)> {
        let shared =
            Arc::new(Shared { state: Mutex::new(State::default()), lines: Condvar::new(), room: Condvar::new() });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new().name("keygate-log".into()).spawn(move || shared.run(out))?
        };
        Ok((Self { shared: Arc::clone(&shared) }, FlushOnDrop { shared, thread: Some(thread) }))
    }

    /// Appends `bytes` (whole lines) to the buffer, waiting for room when it is full.
    pub fn append(&self, bytes: &[u8]) {
        let mut st = self.shared.lock();
        while st.buf.len() >= FULL && !st.stopped {
            st = self.shared.room.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        if st.stopped {
            return;
        }
        st.buf.extend_from_slice(bytes);
        if st.idle {
            st.idle = false;
            self.shared.lines.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread: takes the whole buffer whenever it holds something, writes it, then lets
    /// lines gather.
    fn run(&self, mut out: impl Write) {
        let mut batch = Vec::with_capacity(64 * 1024);
        loop {
            {
                let mut st = self.lock();
                while st.buf.is_empty() && !st.closing {
                    st.idle = true;
                    st = self.lines.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
                if st.buf.is_empty() {
                    st.stopped = true;
                    self.room.notify_all();
                    return;
                }
                std::mem::swap(&mut st.buf, &mut batch);
                self.room.notify_all();
            }
            // stderr gone (a closed pipe): nothing to tell anyone, and the lines go nowhere.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            if batch.capacity() > FULL {
                batch.shrink_to(64 * 1024);
            }
            if !self.lock().closing {
                std::thread::sleep(GATHER);
            }
        }
    }
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.closing = true;
        self.shared.lines.notify_one();
        // The thread says it stopped on `room`.
        let (st, _) = self
            .shared
            .room
            .wait_timeout_while(st, EXIT_WAIT, |st| !st.stopped)
            .unwrap_or_else(PoisonError::into_inner);
        let stopped = st.stopped;
        drop(st);
        match self.thread.take() {
            Some(t) if stopped => {
                let _ = t.join();
            }
            // Stuck in a write nobody reads: left behind, to end with the process.
            _ => {}
        }
    }
}

#[cfg(feature = "server")]
impl LineSink for LogWriter {
    fn write_line(&self, line: &[u8]) {
        self.append(line);
    }
}

impl Write for LogWriter {
    /// tracing-subscriber formats an event whole and writes it in one call, so each call is
    /// appended as it comes.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the thread wrote, and how many writes it made.
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Out {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut o = self.0.lock().unwrap();
            o.0.extend_from_slice(buf);
            o.1 += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_whole_in_order_per_thread_and_what_is_left_on_drop() {
        let out = Out::default();
        let (w, guard) = LogWriter::start(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        w.append(format!("t{t} line {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let (bytes, writes) = out.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20_000, "nothing lost");
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("t{t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..5000).collect::<Vec<_>>(), "thread {t}'s lines whole and in order");
        }
        assert!(writes < 20_000, "written in batches: {writes} writes");
    }

    #[test]
    fn a_lone_line_is_written_at_once_and_a_writer_after_the_end_is_not_stuck() {
        let out = Out::default();
        let (w, guard) = LogWriter::start(out.clone()).unwrap();
        w.append(b"one\n");
        for _ in 0..5000 {
            if !out.0.lock().unwrap().0.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.0.lock().unwrap().0, b"one\n", "the idle thread was woken");
        drop(guard);
        w.append(b"after the end\n");
        assert_eq!(out.0.lock().unwrap().0, b"one\n");
    }

    /// An output that blocks until told to go on (a pipe nobody reads).
    #[derive(Clone)]
    struct Held(Arc<(Mutex<bool>, Condvar)>, Out);

    impl Write for Held {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (go, cv) = &*self.0;
            let mut g = go.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_end_waits_at_most_exit_wait_for_an_output_nobody_reads() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let out = Out::default();
        let (w, guard) = LogWriter::start(Held(gate.clone(), out.clone())).unwrap();
        w.append(b"stuck\n");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(guard);
            let _ = done_tx.send(());
        });
        assert!(done_rx.recv_timeout(EXIT_WAIT * 5).is_ok(), "the guard gave up instead of hanging");
        // Let the stuck thread finish, so the test leaves nothing blocked behind.
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
    }

    #[test]
    fn writers_wait_for_room_when_the_buffer_is_full_and_nothing_is_dropped() {
        let out = Out::default();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let (w, guard) = LogWriter::start(Held(gate.clone(), out.clone())).unwrap();
        let line = vec![b'x'; 1023].into_iter().chain([b'\n']).collect::<Vec<u8>>();
        let writer = {
            let w = w.clone();
            let line = line.clone();
            // Twice FULL while the output is held: the thread holds one batch, the buffer the next.
            std::thread::spawn(move || (0..(3 * FULL / 1024)).for_each(|_| w.append(&line)))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!writer.is_finished(), "the writer waits for room");
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        writer.join().unwrap();
        drop(guard);
        assert_eq!(out.0.lock().unwrap().0.len(), 3 * FULL, "every byte written");
    }
}
