//! Prometheus metrics: request counts and latency histograms by method, route pattern
//! and status (recorded by the request middleware), plus the moderation queue sizes read
//! from the kept counters at scrape time, and how many writes each group commit carried.
//!
//! Requests are counted per worker ([`WorkerMetrics`]) and summed at scrape time
//! ([`RequestCollector`]): with one shared counter and histogram per label set, every
//! request on one core wrote the memory every request on the other core wrote too (and
//! took the histogram's lock), which cost more than the rest of the bookkeeping.

use std::{
    borrow::Cow,
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex, PoisonError,
    },
};

use prometheus_client::{
    collector::Collector,
    encoding::{text::encode, DescriptorEncoder, EncodeLabelSet, NoLabelSet},
    metrics::{
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
        MetricType,
    },
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: Cow<'static, str>,
    /// The route pattern (`/api/v1/comments/{id}`), never the raw path: bounded cardinality.
    pub route: Cow<'static, str>,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Arc<RequestCollector>,
    queue: Family<QueueLabels, Gauge>,
}

/// Upper bounds of the latency buckets: 0.25 ms … ~8 s in doublings (then +Inf).
const LATENCY_BOUNDS: usize = 16;

fn latency_bounds() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_25, 2.0, LATENCY_BOUNDS as u16)
}

/// One label set's requests as one worker saw them. Only that worker records into it
/// (so no other core writes these cache lines); a scrape reads it.
#[derive(Debug, Default)]
struct Observed {
    count: AtomicU64,
    /// The sum of the latencies in seconds, as `f64` bits.
    sum: AtomicU64,
    /// Requests per bucket (not cumulative), the last one +Inf.
    buckets: [AtomicU64; LATENCY_BOUNDS + 1],
}

impl Observed {
    fn record(&self, seconds: f64, bounds: &[f64; LATENCY_BOUNDS]) {
        let bucket = bounds
            .iter()
            .position(|upper| seconds <= *upper)
            .unwrap_or(LATENCY_BOUNDS);
        self.buckets[bucket].fetch_add(1, Relaxed);
        // One writer: a load and a store cannot lose an update.
        let sum = f64::from_bits(self.sum.load(Relaxed)) + seconds;
        self.sum.store(sum.to_bits(), Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

/// Every worker's [`Observed`] of every label set, summed per label set at scrape time
/// into `tally_http_requests_total` and `tally_http_request_duration_seconds`.
#[derive(Debug, Default)]
struct RequestCollector {
    /// A worker adds an entry the first time it sees a label set.
    observed: Mutex<Vec<(RequestLabels, Arc<Observed>)>>,
}

/// What a scrape reports for one label set.
#[derive(Default)]
struct Totals {
    count: u64,
    sum: f64,
    buckets: [u64; LATENCY_BOUNDS + 1],
}

impl RequestCollector {
    fn register(&self, labels: RequestLabels) -> Arc<Observed> {
        let observed = Arc::new(Observed::default());
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((labels, observed.clone()));
        observed
    }

    fn totals(&self) -> BTreeMap<RequestLabels, Totals> {
        let mut totals = BTreeMap::<RequestLabels, Totals>::new();
        for (labels, o) in self
            .observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let t = totals.entry(labels.clone()).or_default();
            t.count += o.count.load(Relaxed);
            t.sum += f64::from_bits(o.sum.load(Relaxed));
            for (total, n) in t.buckets.iter_mut().zip(&o.buckets) {
                *total += n.load(Relaxed);
            }
        }
        totals
    }
}

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.totals();
        let mut requests = encoder.encode_descriptor(
            "tally_http_requests",
            "HTTP requests answered",
            None,
            MetricType::Counter,
        )?;
        for (labels, t) in &totals {
            requests
                .encode_family(labels)?
                .encode_counter::<NoLabelSet, _, u64>(&t.count, None)?;
        }
        let mut latency = encoder.encode_descriptor(
            "tally_http_request_duration_seconds",
            "Time from request to response",
            None,
            MetricType::Histogram,
        )?;
        for (labels, t) in &totals {
            let buckets: Vec<(f64, u64)> = latency_bounds()
                .chain(std::iter::once(f64::INFINITY))
                .zip(t.buckets)
                .collect();
            latency
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(t.sum, t.count, &buckets, None)?;
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Arc::new(RequestCollector::default());
        let queue = Family::<QueueLabels, Gauge>::default();
        registry.register_collector(Box::new(requests.clone()));
        registry.register(
            "tally_moderation_queue_size",
            "Comments per moderation queue",
            queue.clone(),
        );
        Metrics {
            registry,
            requests,
            queue,
        }
    }
}

impl Metrics {
    /// Adds the group-commit writer's histogram of writes per transaction
    /// (`tally_write_batch_size`; see `service::group_commit`).
    pub fn with_write_batch_sizes(mut self, sizes: Option<Histogram>) -> Self {
        if let Some(sizes) = sizes {
            self.registry.register(
                "tally_write_batch_size",
                "Writes committed together by one group-committed transaction",
                sizes,
            );
        }
        self
    }

    /// The text exposition, with the queue sizes as given.
    pub fn render(&self, queues: &[(&str, i64)]) -> String {
        for (name, size) in queues {
            self.queue
                .get_or_create(&QueueLabels {
                    queue: (*name).to_owned(),
                })
                .set(*size);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// One worker thread's request metrics: recording a request takes no lock and writes
/// only memory of this worker's (see the module's doc). Built in the per-worker app
/// factory; not `Send`.
pub struct WorkerMetrics {
    shared: Arc<Metrics>,
    bounds: [f64; LATENCY_BOUNDS],
    observed: RefCell<HashMap<RequestLabels, Arc<Observed>, foldhash::fast::RandomState>>,
}

impl WorkerMetrics {
    pub fn new(shared: Arc<Metrics>) -> Self {
        let mut bounds = [f64::MAX; LATENCY_BOUNDS];
        for (b, upper) in bounds.iter_mut().zip(latency_bounds()) {
            *b = upper;
        }
        WorkerMetrics {
            shared,
            bounds,
            observed: RefCell::default(),
        }
    }

    pub fn observe(&self, labels: RequestLabels, seconds: f64) {
        let mut observed = self.observed.borrow_mut();
        observed
            .entry(labels)
            .or_insert_with_key(|labels| self.shared.requests.register(labels.clone()))
            .record(seconds, &self.bounds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_histograms_and_queue_sizes() {
        let shared = Arc::new(Metrics::default());
        let m = WorkerMetrics::new(shared.clone());
        let labels = RequestLabels {
            method: "GET".into(),
            route: "/healthz".into(),
            status: 200,
        };
        m.observe(labels.clone(), 0.001);
        m.observe(labels, 0.002);
        let text = shared.render(&[("pending", 4)]);
        assert!(
            text.contains(
                r#"tally_http_requests_total{method="GET",route="/healthz",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains("tally_http_request_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(
            text.contains(r#"tally_moderation_queue_size{queue="pending"} 4"#),
            "{text}"
        );
    }

    #[test]
    fn a_workers_handles_count_in_the_shared_registry() {
        let shared = Arc::new(Metrics::default());
        let (a, b) = (
            WorkerMetrics::new(shared.clone()),
            WorkerMetrics::new(shared.clone()),
        );
        let labels = |status| RequestLabels {
            method: "GET".into(),
            route: "/healthz".into(),
            status,
        };
        a.observe(labels(200), 0.001);
        b.observe(labels(200), 0.001);
        a.observe(labels(200), 0.001);
        a.observe(labels(404), 0.001);
        let text = shared.render(&[]);
        assert!(
            text.contains(
                r#"tally_http_requests_total{method="GET",route="/healthz",status="200"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"tally_http_request_duration_seconds_count{method="GET",route="/healthz",status="404"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn latency_buckets_are_cumulative_and_summed_over_workers() {
        let shared = Arc::new(Metrics::default());
        let (a, b) = (
            WorkerMetrics::new(shared.clone()),
            WorkerMetrics::new(shared.clone()),
        );
        let labels = || RequestLabels {
            method: "PUT".into(),
            route: "/x".into(),
            status: 201,
        };
        a.observe(labels(), 0.0001); // the first bucket (≤ 0.25 ms)
        b.observe(labels(), 0.001); // ≤ 1 ms, the third
        b.observe(labels(), 100.0); // beyond the last bound: +Inf only
        let text = shared.render(&[]);
        let series = |le: &str| {
            format!(
                r#"tally_http_request_duration_seconds_bucket{{le="{le}",method="PUT",route="/x",status="201"}} "#
            )
        };
        for (le, n) in [
            ("0.00025", 1),
            ("0.0005", 1),
            ("0.001", 2),
            ("8.192", 2),
            ("+Inf", 3),
        ] {
            assert!(
                text.contains(&format!("{}{n}\n", series(le))),
                "{le}: {text}"
            );
        }
        let sum: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    r#"tally_http_request_duration_seconds_sum{method="PUT",route="/x",status="201"} "#,
                )
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sum in {text}"));
        assert!((sum - 100.0011).abs() < 1e-9, "{sum}");
        assert!(
            text.contains(r#"tally_http_requests_total{method="PUT",route="/x",status="201"} 3"#),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE tally_http_requests counter").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn renders_the_write_batch_sizes_when_given() {
        let sizes = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        sizes.observe(1.0);
        sizes.observe(3.0);
        let text = Metrics::default()
            .with_write_batch_sizes(Some(sizes))
            .render(&[]);
        assert!(text.contains("tally_write_batch_size_count 2"), "{text}");
        assert!(text.contains("tally_write_batch_size_sum 4"), "{text}");
        let without = Metrics::default().with_write_batch_sizes(None).render(&[]);
        assert!(!without.contains("tally_write_batch_size"), "{without}");
    }
}
