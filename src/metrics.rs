//! Prometheus metrics: request counts and latency histograms by method, route pattern
//! and status (recorded by the request middleware), plus the moderation queue sizes read
//! from the kept counters at scrape time, and how many writes each group commit carried.

use std::{borrow::Cow, cell::RefCell, collections::HashMap, sync::Arc};

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
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

type HistogramMaker = fn() -> Histogram;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, HistogramMaker>,
    queue: Family<QueueLabels, Gauge>,
}

fn latency_buckets() -> Histogram {
    // 0.25 ms … ~8 s in doublings.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram, HistogramMaker>::new_with_constructor(
            latency_buckets,
        );
        let queue = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "tally_http_requests",
            "HTTP requests answered",
            requests.clone(),
        );
        registry.register(
            "tally_http_request_duration_seconds",
            "Time from request to response",
            latency.clone(),
        );
        registry.register(
            "tally_moderation_queue_size",
            "Comments per moderation queue",
            queue.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
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

    /// The counter and histogram of one label set (shared with the registry).
    fn handles(&self, labels: &RequestLabels) -> (Counter, Histogram) {
        (
            self.requests.get_or_create(labels).clone(),
            self.latency.get_or_create(labels).clone(),
        )
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

/// One worker thread's handles on the request metrics: recording a request then takes
/// no lock on the families' maps and no SipHash (the families are looked up once per
/// label set and worker). Built in the per-worker app factory; not `Send`.
pub struct WorkerMetrics {
    shared: Arc<Metrics>,
    handles: RefCell<HashMap<RequestLabels, (Counter, Histogram), foldhash::fast::RandomState>>,
}

impl WorkerMetrics {
    pub fn new(shared: Arc<Metrics>) -> Self {
        WorkerMetrics {
            shared,
            handles: RefCell::default(),
        }
    }

    pub fn observe(&self, labels: RequestLabels, seconds: f64) {
        let mut handles = self.handles.borrow_mut();
        let (requests, latency) = handles
            .entry(labels)
            .or_insert_with_key(|labels| self.shared.handles(labels));
        latency.observe(seconds);
        requests.inc();
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
