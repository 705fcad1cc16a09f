//! Metrics as CloudWatch Embedded Metric Format (EMF) lines on stdout: on Lambda, CloudWatch
//! Logs turns each line into metrics, with no agent and no API call on the request's path
//! (docs: "Specification: Embedded metric format"). Logs go to stderr, so stdout holds
//! nothing but these lines.
//!
//! One [`Metrics`] is one line: the function's name (and any other dimension), and metrics,
//! each a number or a list of numbers (EMF takes at most 100 values per metric in a line;
//! longer lists are split over several lines).

use std::io::Write;

use serde_json::{json, Map, Value};

/// The CloudWatch namespace (`METRICS_NAMESPACE`, default `Sentinel`).
pub fn namespace() -> String {
    std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| "Sentinel".into())
}

/// EMF's limit of values per metric in one line.
pub const MAX_VALUES: usize = 100;

/// A metric's unit, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Bytes,
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
            Unit::Seconds => "Seconds",
        }
    }
}

/// The metrics of one invocation (or one part of it), with their dimensions.
#[derive(Debug, Clone)]
pub struct Metrics {
    namespace: String,
    dimensions: Vec<(String, String)>,
    metrics: Vec<(String, Unit, Vec<f64>)>,
}

impl Metrics {
    /// Metrics of `function` (the `Function` dimension).
    pub fn new(function: &str) -> Self {
        Self {
            namespace: namespace(),
            dimensions: vec![("Function".into(), function.into())],
            metrics: Vec::new(),
        }
    }

    /// Another dimension (e.g. the query API's `Route`).
    pub fn dimension(mut self, name: &str, value: &str) -> Self {
        self.dimensions.push((name.into(), value.into()));
        self
    }

    /// One value.
    pub fn put(&mut self, name: &str, unit: Unit, value: f64) -> &mut Self {
        self.put_all(name, unit, vec![value])
    }

    /// Several values of one metric (each counts in its statistics: p99 is over them all).
    /// A metric with no value is left out.
    pub fn put_all(&mut self, name: &str, unit: Unit, values: Vec<f64>) -> &mut Self {
        if !values.is_empty() {
            self.metrics.push((name.into(), unit, values));
        }
        self
    }

    /// The EMF lines, stamped `timestamp_ms` (milliseconds since the epoch).
    pub fn to_lines(&self, timestamp_ms: i64) -> Vec<String> {
        let chunks = self
            .metrics
            .iter()
            .map(|(_, _, v)| v.len().div_ceil(MAX_VALUES))
            .max()
            .unwrap_or(0);
        (0..chunks)
            .map(|chunk| {
                let mut root = Map::new();
                let mut declared = Vec::new();
                for (name, unit, values) in &self.metrics {
                    let part: Vec<f64> = values
                        .iter()
                        .skip(chunk * MAX_VALUES)
                        .take(MAX_VALUES)
                        .copied()
                        .collect();
                    let value = match part.as_slice() {
                        [] => continue,
                        [one] => json!(one),
                        many => json!(many),
                    };
                    declared.push(json!({"Name": name, "Unit": unit.as_str()}));
                    root.insert(name.clone(), value);
                }
                for (name, value) in &self.dimensions {
                    root.insert(name.clone(), Value::String(value.clone()));
                }
                let names: Vec<&String> = self.dimensions.iter().map(|(n, _)| n).collect();
                root.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": timestamp_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": self.namespace,
                            "Dimensions": [names],
                            "Metrics": declared,
                        }]
                    }),
                );
                Value::Object(root).to_string()
            })
            .collect()
    }

    /// Writes the lines to stdout, now.
    pub fn emit(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let lines = self.to_lines(now);
        let mut out = std::io::stdout().lock();
        for line in lines {
            // A metric that cannot be written is not worth failing the invocation for.
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
}

/// The EMF lines among `text` (a function's stdout), parsed.
pub fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_its_namespace_dimensions_and_metrics_as_emf_requires() {
        let mut m = Metrics::new("writer");
        m.put("EventsStored", Unit::Count, 7.0).put_all(
            "IngestToStored",
            Unit::Milliseconds,
            vec![12.5, 40.0],
        );
        let lines = m.to_lines(1_700_000_000_123);
        assert_eq!(lines.len(), 1);
        let line: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_123i64);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Sentinel");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "EventsStored", "Unit": "Count"}, {"Name": "IngestToStored", "Unit": "Milliseconds"}])
        );
        // Every dimension and metric is a member of the root, as the directive names it.
        assert_eq!(line["Function"], "writer");
        assert_eq!(line["EventsStored"], 7.0);
        assert_eq!(line["IngestToStored"], json!([12.5, 40.0]));
        assert_eq!(
            parse_lines(&format!("not json\n{}\n{{}}\n", lines[0])).len(),
            1
        );
    }

    #[test]
    fn more_than_a_hundred_values_are_split_over_lines_and_none_is_lost() {
        let mut m = Metrics::new("query").dimension("Route", "list");
        m.put("Rows", Unit::Count, 3.0).put_all(
            "Latency",
            Unit::Milliseconds,
            (0..250).map(f64::from).collect(),
        );
        let lines: Vec<Value> = m
            .to_lines(0)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        let all: Vec<f64> = lines
            .iter()
            .flat_map(|l| match &l["Latency"] {
                Value::Array(a) => a.iter().map(|v| v.as_f64().unwrap()).collect(),
                v => vec![v.as_f64().unwrap()],
            })
            .collect();
        assert_eq!(all, (0..250).map(f64::from).collect::<Vec<_>>());
        // The single-valued metric is in the first line only: it is not counted three times.
        assert_eq!(lines.iter().filter(|l| l.get("Rows").is_some()).count(), 1);
        assert_eq!(
            lines[1]["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "Latency", "Unit": "Milliseconds"}])
        );
        assert!(lines.iter().all(|l| l["Route"] == "list"
            && l["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == json!([["Function", "Route"]])));
    }

    #[test]
    fn no_metric_is_no_line() {
        let mut m = Metrics::new("ingest");
        m.put_all("Nothing", Unit::Count, vec![]);
        assert!(m.to_lines(0).is_empty());
    }
}
