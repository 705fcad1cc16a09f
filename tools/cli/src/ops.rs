//! The operator's commands over the HTTP APIs (issue 13): `emit-sample`, `poke`, `query`,
//! `tail` and `export`. Endpoints and token come from flags or from the environment that
//! `scripts/env.sh` sets (`LAMBDA_INVOKE_URL`) and `scripts/up` prints (`SENTINEL_TOKEN`).

use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Where the APIs are, and the bearer token.
#[derive(clap::Args, Clone)]
pub struct Endpoints {
    /// The ingest API's base URL (default: `$LAMBDA_INVOKE_URL/lambda-url/ingest`).
    #[arg(long, env = "SENTINEL_INGEST_URL")]
    ingest_url: Option<String>,
    /// The query API's base URL (default: `$LAMBDA_INVOKE_URL/lambda-url/query`).
    #[arg(long, env = "SENTINEL_QUERY_URL")]
    query_url: Option<String>,
    /// The bearer token (`sentinel token` mints one locally; `scripts/up` prints one).
    #[arg(long, env = "SENTINEL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Endpoints {
    fn base(function: &str) -> String {
        let invoke =
            std::env::var("LAMBDA_INVOKE_URL").unwrap_or_else(|_| "http://[::1]:9000".into());
        format!("{}/lambda-url/{function}", invoke.trim_end_matches('/'))
    }

    pub fn ingest(&self) -> String {
        self.ingest_url
            .clone()
            .unwrap_or_else(|| Self::base("ingest"))
            .trim_end_matches('/')
            .to_string()
    }

    pub fn query(&self) -> String {
        self.query_url
            .clone()
            .unwrap_or_else(|| Self::base("query"))
            .trim_end_matches('/')
            .to_string()
    }

    fn token(&self) -> anyhow::Result<&str> {
        self.token.as_deref().context(
            "no token: give --token or set SENTINEL_TOKEN (`sentinel token --tenant default --scope events:write,events:read`)",
        )
    }

    /// A client that sends the token (if any) with every request.
    pub fn authed_client(&self) -> anyhow::Result<reqwest::Client> {
        self.client()
    }

    fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &self.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .build()?)
    }
}

/// What an API answered with an error body: its code and message, or the status.
async fn refusal(response: reqwest::Response) -> String {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match (
        body["error"]["code"].as_str(),
        body["error"]["message"].as_str(),
    ) {
        (Some(code), Some(message)) => format!("{status}: {code}: {message}"),
        _ => format!("{status}"),
    }
}

// ---------------------------------------------------------------------------------------
// emit-sample

/// Realistic events: a few dozen people and services acting on invoices, users, documents,
/// roles and API keys, with the before and after of what they changed.
pub fn sample_event(n: u64, run: &str) -> Value {
    const PEOPLE: [&str; 12] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
        "mallory", "oscar",
    ];
    const SERVICES: [&str; 3] = ["svc-billing", "svc-sync", "svc-reports"];
    let pick = |salt: u64, len: usize| -> usize {
        // A cheap, deterministic mix, so a sample run is reproducible.
        let x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        ((x >> 29) % len as u64) as usize
    };
    let (actor_id, actor_type) = if pick(1, 10) < 8 {
        (format!("user_{}", PEOPLE[pick(2, PEOPLE.len())]), "user")
    } else {
        (SERVICES[pick(3, SERVICES.len())].to_string(), "service")
    };
    let ip = format!("10.{}.{}.{}", pick(4, 4), pick(5, 16), 1 + pick(6, 250));
    let (resource_type, resource_id, action, changes) = match pick(7, 6) {
        0 | 1 => {
            let statuses = ["draft", "pending", "paid", "void"];
            let s = pick(8, 3);
            (
                "invoice",
                format!("inv_{:05}", pick(9, 500)),
                "invoice.update",
                json!({"status": {"before": statuses[s], "after": statuses[s + 1]},
                       "amount": {"before": 100 * (1 + pick(10, 50)), "after": 100 * (1 + pick(11, 50))}}),
            )
        }
        2 => (
            "user",
            format!("user_{}", PEOPLE[pick(12, PEOPLE.len())]),
            "user.login",
            json!({}),
        ),
        3 => (
            "document",
            format!("doc_{:04}", pick(13, 300)),
            if pick(14, 10) == 0 {
                "document.delete"
            } else {
                "document.update"
            },
            json!({"title": {"before": format!("Draft {}", pick(15, 99)), "after": format!("Final {}", pick(16, 99))},
                   "tags": {"before": ["q3"], "after": ["q3", "reviewed"]}}),
        ),
        4 => (
            "role",
            format!("role_{}", ["admin", "editor", "viewer"][pick(17, 3)]),
            "role.grant",
            json!({"members": {"before": {"count": pick(18, 9)}, "after": {"count": pick(18, 9) + 1}}}),
        ),
        _ => (
            "api_key",
            format!("key_{:04}", pick(19, 100)),
            "api_key.rotate",
            json!({"last4": {"before": format!("{:04}", pick(20, 9999)), "after": format!("{:04}", pick(21, 9999))}}),
        ),
    };
    json!({
        "actor_id": actor_id,
        "actor_type": actor_type,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "changes": changes,
        "metadata": {"ip": ip, "user_agent": "sentinel-emit-sample", "sample_run": run, "n": n},
    })
}

#[derive(clap::Args)]
pub struct EmitArgs {
    /// How many events to send.
    #[arg(default_value_t = 1000)]
    count: u64,
    /// Events per second at most (default: as fast as the API takes them).
    #[arg(long)]
    rate: Option<f64>,
    /// Events per request (1 to 500).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=500))]
    batch: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    concurrency: u64,
    /// A summary as one JSON object instead of the progress bar and text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    endpoints: Endpoints,
}

/// Sends sample events; `Ok(false)` if any was refused.
pub async fn emit_sample(args: EmitArgs) -> anyhow::Result<bool> {
    args.endpoints.token()?;
    let client = args.endpoints.client()?;
    let url = format!("{}/events", args.endpoints.ingest());
    let run = format!("{:x}", chrono::Utc::now().timestamp_micros());
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(args.count);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} events {per_sec} eta {eta} {msg}",
            )
            .expect("a valid template"),
        );
        bar
    };
    let batches: Vec<(u64, u64)> = (0..args.count)
        .step_by(args.batch as usize)
        .map(|start| (start, (start + args.batch).min(args.count)))
        .collect();
    let started = Instant::now();
    let mut accepted = 0u64;
    let mut refused = 0u64;
    let mut first_refusal: Option<String> = None;
    let mut latencies: Vec<Duration> = Vec::with_capacity(batches.len());
    let mut answers = futures_util::stream::iter(batches)
        .map(|(start, end)| {
            let (client, url, run) = (&client, &url, &run);
            async move {
                if let Some(rate) = args.rate {
                    // Each batch waits for its place in the schedule.
                    let due = started + Duration::from_secs_f64(start as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let events: Vec<Value> = (start..end).map(|n| sample_event(n, run)).collect();
                let sent = Instant::now();
                let answer = client
                    .post(url)
                    .json(&json!({ "events": events }))
                    .send()
                    .await;
                let n = end - start;
                let outcome = match answer {
                    Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        let ids = body["ids"].as_array().map_or(0, |ids| ids.len() as u64);
                        if ids == n {
                            Ok(n)
                        } else {
                            Err(format!("202 with {ids} ids for {n} events"))
                        }
                    }
                    Ok(r) => Err(refusal(r).await),
                    Err(e) => Err(format!("could not reach {url}: {e}")),
                };
                (n, sent.elapsed(), outcome)
            }
        })
        .buffer_unordered(args.concurrency as usize);
    while let Some((n, latency, outcome)) = answers.next().await {
        latencies.push(latency);
        match outcome {
            Ok(n) => accepted += n,
            Err(why) => {
                refused += n;
                first_refusal.get_or_insert(why);
            }
        }
        bar.inc(n);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| -> f64 {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let rate = accepted as f64 / seconds.max(1e-9);
    if args.json {
        println!(
            "{}",
            json!({"sent": args.count, "accepted": accepted, "refused": refused,
                   "seconds": seconds, "events_per_second": rate,
                   "request_ms": {"p50": percentile(0.5), "p99": percentile(0.99)},
                   "first_refusal": first_refusal, "sample_run": run})
        );
    } else {
        println!(
            "{accepted} of {} events accepted in {seconds:.1} s ({rate:.0} events/s; requests of {} events: p50 {:.0} ms, p99 {:.0} ms)",
            args.count,
            args.batch,
            percentile(0.5),
            percentile(0.99)
        );
        println!("their metadata.sample_run is {run}");
        if let Some(why) = &first_refusal {
            println!("{refused} events REFUSED; the first refusal: {why}");
        }
    }
    Ok(refused == 0)
}

// ---------------------------------------------------------------------------------------
// query, tail, export

/// The filters of `GET /events`.
#[derive(clap::Args, Clone, Default)]
pub struct Filters {
    #[arg(long)]
    actor_id: Option<String>,
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    resource_type: Option<String>,
    #[arg(long)]
    resource_id: Option<String>,
    /// Events that occurred at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// ... and before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// Events that changed this field (a top-level key of `changes`).
    #[arg(long)]
    changed_field: Option<String>,
    /// ... from this value (JSON, or text).
    #[arg(long)]
    changed_from: Option<String>,
    /// ... to this value (JSON, or text).
    #[arg(long)]
    changed_to: Option<String>,
}

impl Filters {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("actor_id", &self.actor_id),
            ("action", &self.action),
            ("resource_type", &self.resource_type),
            ("resource_id", &self.resource_id),
            ("from", &self.from),
            ("to", &self.to),
            ("changed_field", &self.changed_field),
            ("changed_from", &self.changed_from),
            ("changed_to", &self.changed_to),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// One page of `GET /events`.
async fn page(
    client: &reqwest::Client,
    endpoints: &Endpoints,
    params: &[(&'static str, String)],
) -> anyhow::Result<(Vec<Value>, Option<String>)> {
    let url = format!("{}/events", endpoints.query());
    let response = client
        .get(&url)
        .query(params)
        .send()
        .await
        .with_context(|| format!("could not reach {url}"))?;
    if !response.status().is_success() {
        bail!("{url} refused: {}", refusal(response).await);
    }
    let body: Value = response.json().await.context("the answer is not JSON")?;
    let data = body["data"].as_array().cloned().unwrap_or_default();
    let next = body["next_cursor"].as_str().map(str::to_string);
    Ok((data, next))
}

fn line(event: &Value) -> String {
    let s = |k: &str| event[k].as_str().unwrap_or("").to_string();
    let changed: Vec<&str> = event["changes"]
        .as_object()
        .map(|c| c.keys().map(String::as_str).collect())
        .unwrap_or_default();
    format!(
        "{:<27}  {:<18}  {:<18}  {:<28}  {:<24}  {}",
        s("occurred_at"),
        s("actor_id"),
        s("action"),
        format!("{}/{}", s("resource_type"), s("resource_id")),
        changed.join(","),
        s("id")
    )
}

fn header() -> String {
    format!(
        "{:<27}  {:<18}  {:<18}  {:<28}  {:<24}  {}",
        "OCCURRED_AT", "ACTOR", "ACTION", "RESOURCE", "CHANGED", "ID"
    )
}

#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    filters: Filters,
    /// The most events to print (pages are followed as needed).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    limit: u64,
    /// Oldest first (default: newest first).
    #[arg(long)]
    oldest_first: bool,
    /// The events as a JSON array.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    endpoints: Endpoints,
}

pub async fn query(args: QueryArgs) -> anyhow::Result<()> {
    args.endpoints.token()?;
    let client = args.endpoints.client()?;
    let mut params = args.filters.pairs();
    params.push((
        "sort",
        if args.oldest_first {
            "occurred_at"
        } else {
            "-occurred_at"
        }
        .into(),
    ));
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut asked = params.clone();
        asked.push((
            "limit",
            (args.limit - events.len() as u64).min(1000).to_string(),
        ));
        if let Some(c) = &cursor {
            asked.push(("cursor", c.clone()));
        }
        let (data, next) = page(&client, &args.endpoints, &asked).await?;
        events.extend(data);
        cursor = next;
        if cursor.is_none() || events.len() as u64 >= args.limit {
            break;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
    } else {
        println!("{}", header());
        for event in &events {
            println!("{}", line(event));
        }
        println!(
            "{} events{}",
            events.len(),
            if cursor.is_some() {
                " (more match: raise --limit)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    filters: Filters,
    /// Seconds between polls.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Stop after this many events (default: follow until interrupted).
    #[arg(long)]
    count: Option<u64>,
    /// One JSON object a line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    endpoints: Endpoints,
}

/// Follows new events: polls the newest page, printing, oldest first, the events not seen
/// yet that occurred from a minute before the tail started on (a minute, so that events
/// whose writer is a little behind are not missed).
pub async fn tail(args: TailArgs) -> anyhow::Result<()> {
    args.endpoints.token()?;
    let client = args.endpoints.client()?;
    let since = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut params = args.filters.pairs();
    if args.filters.from.is_none() {
        params.push(("from", since));
    }
    params.push(("sort", "-occurred_at".into()));
    params.push(("limit", "1000".into()));
    let mut seen: HashSet<String> = HashSet::new();
    let mut order: VecDeque<String> = VecDeque::new();
    let mut printed = 0u64;
    if !args.json {
        println!("{}", header());
    }
    loop {
        let (data, _) = page(&client, &args.endpoints, &params).await?;
        for event in data.iter().rev() {
            let Some(id) = event["id"].as_str() else {
                continue;
            };
            if !seen.insert(id.to_string()) {
                continue;
            }
            order.push_back(id.to_string());
            if order.len() > 100_000 {
                if let Some(old) = order.pop_front() {
                    seen.remove(&old);
                }
            }
            if args.json {
                println!("{event}");
            } else {
                println!("{}", line(event));
            }
            printed += 1;
            if args.count.is_some_and(|c| printed >= c) {
                return Ok(());
            }
        }
        std::io::stdout().flush()?;
        tokio::time::sleep(Duration::from_secs_f64(args.interval.max(0.2))).await;
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Csv,
    Ndjson,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    filters: Filters,
    #[arg(long, value_enum, default_value = "ndjson")]
    format: Format,
    /// The file to write (refused if it exists, unless --force).
    #[arg(long, short)]
    output: std::path::PathBuf,
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    endpoints: Endpoints,
}

/// The CSV columns: every field of an event; `changes` and `metadata` as JSON text.
pub const CSV_COLUMNS: [&str; 11] = [
    "id",
    "tenant_id",
    "occurred_at",
    "received_at",
    "actor_id",
    "actor_type",
    "action",
    "resource_type",
    "resource_id",
    "changes",
    "metadata",
];

/// Writes every event of the filter to a file, oldest first, following the pages.
pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    args.endpoints.token()?;
    let client = args.endpoints.client()?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .create_new(!args.force)
        .open(&args.output)
        .with_context(|| format!("could not create {}", args.output.display()))?;
    let out = std::io::BufWriter::new(file);
    enum Sink {
        Csv(Box<csv::Writer<std::io::BufWriter<std::fs::File>>>),
        Ndjson(std::io::BufWriter<std::fs::File>),
    }
    let mut sink = match args.format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(CSV_COLUMNS)?;
            Sink::Csv(Box::new(w))
        }
        Format::Ndjson => Sink::Ndjson(out),
    };
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} events exported {per_sec}")
            .expect("a valid template"),
    );
    let mut params = args.filters.pairs();
    params.push(("sort", "occurred_at".into()));
    params.push(("limit", "1000".into()));
    let mut cursor: Option<String> = None;
    let mut count = 0u64;
    loop {
        let mut asked = params.clone();
        if let Some(c) = &cursor {
            asked.push(("cursor", c.clone()));
        }
        let (data, next) = page(&client, &args.endpoints, &asked).await?;
        for event in &data {
            match &mut sink {
                Sink::Csv(w) => {
                    let record: Vec<String> = CSV_COLUMNS
                        .iter()
                        .map(|c| match &event[*c] {
                            Value::String(s) => s.clone(),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        })
                        .collect();
                    w.write_record(&record)?;
                }
                Sink::Ndjson(out) => writeln!(out, "{event}")?,
            }
        }
        count += data.len() as u64;
        bar.set_position(count);
        cursor = next;
        if cursor.is_none() {
            break;
        }
    }
    match &mut sink {
        Sink::Csv(w) => w.flush()?,
        Sink::Ndjson(out) => out.flush()?,
    }
    bar.finish_and_clear();
    println!("{count} events written to {}", args.output.display());
    Ok(())
}
