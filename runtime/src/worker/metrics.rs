//! A worker's metrics, in Prometheus' text format on `--metrics-addr`: a handful of counters, gauges
//! and two histograms, kept in atomics and written out by hand (a registry crate would bring more
//! than these few lines do).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The histograms' upper bounds, in seconds: from a claim that is all but immediate to a long build.
const BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// A histogram: how many observations fell at or under each bound, their sum and count.
#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(&mut self.counts) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// What a worker counts.
#[derive(Default)]
pub struct Metrics {
    /// Slots (`--concurrency`).
    pub slots: AtomicU64,
    /// Slots running a job now.
    pub busy: AtomicU64,
    /// Expired leases this worker's reaper found (their jobs requeued, or ended `FAULT`).
    pub leases_expired: AtomicU64,
    /// Heartbeats that failed (the database unreachable, or the lease lost).
    pub heartbeat_failures: AtomicU64,
    /// Jobs by how they ended here: a job state, `lease_lost` or `released`.
    jobs: Mutex<BTreeMap<String, u64>>,
    /// Action cache lookups of the builds run here, by result (`hit`, `miss`).
    cache: Mutex<BTreeMap<String, u64>>,
    /// Jobs by state in the whole queue, as last counted.
    queue: Mutex<BTreeMap<String, i64>>,
    queue_seconds: Mutex<Histogram>,
    duration_seconds: Mutex<Histogram>,
}

impl Metrics {
    /// Counts a job that ended on this worker as `result`, after `seconds`, having waited `queued`
    /// seconds in the queue.
    pub fn job_ended(&self, result: &str, seconds: f64) {
        *self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(result.to_string())
            .or_default() += 1;
        self.duration_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(seconds);
    }

    /// Counts an action cache lookup of a build run here.
    pub fn cache_lookup(&self, hit: bool) {
        *self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(if hit { "hit" } else { "miss" }.to_string())
            .or_default() += 1;
    }

    /// Records how long a claimed job waited in the queue.
    pub fn job_claimed(&self, queued: f64) {
        self.queue_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(queued.max(0.0));
    }

    /// Replaces the queue's counts by state.
    pub fn set_queue(&self, counts: BTreeMap<String, i64>) {
        *self.queue.lock().unwrap_or_else(|e| e.into_inner()) = counts;
    }

    /// The metrics in Prometheus' text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            &mut out,
            "kiln_worker_slots",
            "Jobs this worker runs at once.",
            self.slots.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "kiln_worker_busy_slots",
            "Slots running a job now.",
            self.busy.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP kiln_jobs_total Jobs that ended on this worker, by result.\n# TYPE kiln_jobs_total counter"
        );
        for (result, n) in self.jobs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "kiln_jobs_total{{result=\"{result}\"}} {n}");
        }
        self.queue_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .render(
                "kiln_job_queue_seconds",
                "Time from submission to claim.",
                &mut out,
            );
        self.duration_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .render(
                "kiln_job_duration_seconds",
                "Time from claim to the job's end on this worker.",
                &mut out,
            );
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "kiln_lease_expired_total",
            "Expired leases this worker's reaper found.",
            self.leases_expired.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "kiln_heartbeat_failures_total",
            "Heartbeats that failed.",
            self.heartbeat_failures.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP kiln_cache_requests_total Action cache lookups of the builds run here.\n# TYPE kiln_cache_requests_total counter"
        );
        for (result, n) in self.cache.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "kiln_cache_requests_total{{kind=\"action\",result=\"{result}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP kiln_queue_jobs Jobs in the queue by state, as last counted.\n# TYPE kiln_queue_jobs gauge"
        );
        for (state, n) in self.queue.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "kiln_queue_jobs{{state=\"{state}\"}} {n}");
        }
        out
    }
}

/// Answers every HTTP request on `listener` with the metrics, until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: std::sync::Arc<Metrics>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // The request itself does not matter: any path gets the metrics.
            let mut request = [0u8; 4096];
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut request))
                    .await;
            let body = metrics.render();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_metrics_render_as_prometheus_text() {
        let m = Metrics::default();
        m.slots.store(2, Ordering::Relaxed);
        m.job_claimed(0.07);
        m.job_ended("SUCCEEDED", 3.0);
        m.set_queue(BTreeMap::from([("QUEUED".to_string(), 4)]));
        m.cache_lookup(true);
        let text = m.render();
        assert!(text.contains("kiln_worker_slots 2\n"), "{text}");
        assert!(text.contains("kiln_jobs_total{result=\"SUCCEEDED\"} 1\n"));
        assert!(text.contains("kiln_job_queue_seconds_bucket{le=\"0.05\"} 0\n"));
        assert!(text.contains("kiln_job_queue_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("kiln_job_duration_seconds_count 1\n"));
        assert!(text.contains("kiln_queue_jobs{state=\"QUEUED\"} 4\n"));
        assert!(text.contains("kiln_cache_requests_total{kind=\"action\",result=\"hit\"} 1\n"));
    }
}
