//! A log writer that hands lines to a background thread in batches.
//!
//! tracing-appender's non-blocking writer sends each line through a channel, and its
//! thread, idle between lines most of the time, is woken by nearly every send: a futex
//! wake and a context switch per request, on the same two cores that serve requests.
//! Here a line is appended to a buffer under a mutex. Only the line that finds its
//! buffer empty wakes the thread, which then lingers for a moment so that more lines
//! arrive, takes the buffers and writes each with one `write(2)`. Under load that is a
//! wake per linger period instead of one per line.
//!
//! There are [`SHARDS`] buffers and a thread always appends to the same one: its lines
//! stay in their order, and two workers logging every request do not take the same lock
//! and write the same memory on every line (which costs more than the copy itself once
//! the cores pass that memory back and forth). Lines of different threads written in
//! the same linger period may appear grouped by buffer rather than by time.
//!
//! One `write` call stays contiguous in the output (tracing-subscriber hands over a
//! whole line in one). Nothing is dropped while the [`Guard`] lives: a writer that finds
//! `max_pending` bytes already waiting in its buffer blocks until the thread has taken
//! them. Dropping the guard writes what is pending and stops the thread; lines logged
//! after that are discarded.

use std::{
    io::{self, Write},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use tracing_subscriber::fmt::MakeWriter;

/// How long the thread lets lines gather after the first one arrives.
pub const LINGER: Duration = Duration::from_millis(20);

/// Bytes waiting in one buffer past which its writers block (back-pressure, never loss).
pub const MAX_PENDING: usize = 1 << 20;

/// Buffers; threads are spread over them in the order they first log.
pub const SHARDS: usize = 8;

/// The buffer of the calling thread.
fn shard_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// One buffer, on cache lines of its own (two cores writing neighbouring buffers would
/// otherwise still pass one line back and forth).
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    pending: Mutex<Vec<u8>>,
    /// Signalled when the thread takes this buffer.
    drained: Condvar,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves at worst a partial line behind.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Shared {
    shards: [Shard; SHARDS],
    /// Set when a line landed in an empty buffer since the thread last looked.
    signalled: Mutex<bool>,
    /// Signalled with `signalled` set, and at shutdown (with its lock held, so the
    /// thread cannot miss it between checking `closed` and waiting).
    filled: Condvar,
    closed: AtomicBool,
    max_pending: usize,
}

impl Shared {
    fn signalled(&self) -> MutexGuard<'_, bool> {
        self.signalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The `MakeWriter` to give tracing-subscriber: every writer it makes appends to the
/// calling thread's buffer.
#[derive(Clone)]
pub struct BatchedWriter(Arc<Shared>);

/// Keeps the log thread running; dropping it writes what is pending and joins it.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread that writes batches to `out`.
pub fn spawn(
    out: impl Write + Send + 'static,
    linger: Duration,
    max_pending: usize,
) -> io::Result<(BatchedWriter, Guard)> {
    let shared = Arc::new(Shared {
        max_pending,
        ..Shared::default()
    });
    let thread = thread::Builder::new().name("tally-log".into()).spawn({
        let shared = shared.clone();
        move || write_batches(&shared, out, linger)
    })?;
    Ok((
        BatchedWriter(shared.clone()),
        Guard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_batches(shared: &Shared, mut out: impl Write, linger: Duration) {
    // What was taken from each buffer; swapped with it, so no allocation in steady state.
    let mut batches: [Vec<u8>; SHARDS] = Default::default();
    loop {
        let mut signalled = shared.signalled();
        while !*signalled && !shared.is_closed() {
            signalled = shared
                .filled
                .wait(signalled)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // Reset before taking the buffers: a line that lands in one after it was taken
        // signals again, and one that lands before is taken now.
        *signalled = false;
        let closed = shared.is_closed();
        drop(signalled);
        if !closed {
            thread::sleep(linger);
        }
        for (shard, batch) in shared.shards.iter().zip(batches.iter_mut()) {
            let mut pending = shard.lock();
            if pending.is_empty() {
                continue;
            }
            std::mem::swap(&mut *pending, batch);
            drop(pending);
            shard.drained.notify_all();
        }
        for batch in batches.iter_mut().filter(|b| !b.is_empty()) {
            // Nowhere to report a failed write to but the stream that failed.
            let _ = out.write_all(batch);
            batch.clear();
        }
        let _ = out.flush();
        if closed {
            return;
        }
    }
}

impl Write for &BatchedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let shared = &self.0;
        let shard = &shared.shards[shard_of_this_thread()];
        let mut pending = shard.lock();
        while pending.len() >= shared.max_pending && !shared.is_closed() {
            pending = shard
                .drained
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if shared.is_closed() {
            return Ok(buf.len());
        }
        let was_empty = pending.is_empty();
        pending.extend_from_slice(buf);
        drop(pending);
        if was_empty {
            *shared.signalled() = true;
            shared.filled.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = &'a BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Set before the thread's last pass, which takes every buffer's lock: a writer
        // that saw it unset under that lock has appended by then; one after sees it set.
        self.shared.closed.store(true, Ordering::Release);
        {
            let _held = self.shared.signalled();
            self.shared.filled.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Writers still waiting for room see `closed` and give up.
        for shard in &self.shared.shards {
            shard.drained.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// Collects what the thread writes, and how many writes it took.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_of_every_thread_arrives_in_its_order_in_few_writes() {
        let sink = Sink::default();
        let (writer, guard) = spawn(sink.clone(), Duration::from_millis(5), MAX_PENDING).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                thread::spawn(move || {
                    for i in 0..5000 {
                        // As tracing-subscriber does: a whole line in one write.
                        (&writer)
                            .write_all(format!("{t} {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let (bytes, writes) = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let mut next = [0; 4];
        for line in text.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "thread {t} out of order");
            next[t] += 1;
        }
        assert_eq!(next, [5000; 4]);
        assert!(writes < 20_000, "{writes} writes for 20 000 lines");
    }

    #[test]
    fn a_line_is_written_without_waiting_for_more() {
        let sink = Sink::default();
        let (writer, _guard) = spawn(sink.clone(), Duration::from_millis(1), MAX_PENDING).unwrap();
        (&writer).write_all(b"alone\n").unwrap();
        // Liveness, not timing: the bound only keeps a broken writer from hanging the suite.
        for _ in 0..5000 {
            if !sink.0.lock().unwrap().0.is_empty() {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(sink.0.lock().unwrap().0, b"alone\n");
    }

    /// Holds every write until it is let through.
    struct Gate(Mutex<mpsc::Receiver<()>>, Sink);

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().recv().unwrap();
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_buffer_makes_writers_wait_and_loses_nothing() {
        let sink = Sink::default();
        let (open, gate) = mpsc::channel();
        let (writer, guard) =
            spawn(Gate(Mutex::new(gate), sink.clone()), Duration::ZERO, 4).unwrap();
        let (done_tx, done) = mpsc::channel();
        let producer = thread::spawn({
            let writer = writer.clone();
            move || {
                for i in 0..50 {
                    (&writer).write_all(format!("{i:03}\n").as_bytes()).unwrap();
                }
                done_tx.send(()).unwrap();
            }
        });
        // The thread is stuck at the gate with one batch: the producer cannot have
        // finished 200 bytes with a 4-byte limit.
        assert!(done.recv_timeout(Duration::from_millis(200)).is_err());
        // One per byte is more than enough: a batch is at least a byte.
        for _ in 0..200 {
            let _ = open.send(());
        }
        producer.join().unwrap();
        drop(guard);
        drop(open);
        let text = String::from_utf8(sink.0.lock().unwrap().0.clone()).unwrap();
        let expected: String = (0..50).map(|i| format!("{i:03}\n")).collect();
        assert_eq!(text, expected);
    }
}
