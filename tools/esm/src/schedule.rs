//! The stand-in for the EventBridge schedule that fires the archiver.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tracing::{info, instrument, warn};

use crate::config::ScheduleConfig;
use crate::invoke::Invoker;

/// An EventBridge "Scheduled Event", as AWS sends it to a rule's target.
pub fn scheduled_event(
    region: &str,
    account_id: &str,
    time: DateTime<Utc>,
    id: uuid::Uuid,
) -> serde_json::Value {
    json!({
        "version": "0",
        "id": id.to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "region": region,
        "resources": [format!("arn:aws:events:{region}:{account_id}:rule/sentinel-local-schedule")],
        "detail": {}
    })
}

/// Invokes the scheduled function every `rate`, first one `rate` after the start, forever.
#[instrument(name = "schedule", skip_all, fields(function = %schedule.function))]
pub(crate) async fn run_schedule(
    invoker: Invoker,
    schedule: ScheduleConfig,
    region: String,
    account_id: String,
) {
    let start = tokio::time::Instant::now() + schedule.rate;
    let mut ticks = tokio::time::interval_at(start, schedule.rate);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let event = scheduled_event(&region, &account_id, Utc::now(), uuid::Uuid::new_v4());
        let started = std::time::Instant::now();
        let payload = serde_json::to_vec(&event).expect("a JSON value serializes");
        let result = invoker.invoke(&schedule.function, payload).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(body) => {
                info!(duration_ms, response = %String::from_utf8_lossy(&body), "scheduled invocation succeeded")
            }
            Err(e) => warn!(duration_ms, error = %e, "scheduled invocation failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;

    #[test]
    fn the_scheduled_event_is_shaped_like_eventbridge_sends_it() {
        let time = DateTime::parse_from_rfc3339("2026-01-31T23:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = uuid::Uuid::nil();

        let event = scheduled_event("us-east-1", "000000000000", time, id);

        assert_eq!(
            event,
            json!({
                "version": "0",
                "id": "00000000-0000-0000-0000-000000000000",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "000000000000",
                "time": "2026-01-31T23:00:00Z",
                "region": "us-east-1",
                "resources": ["arn:aws:events:us-east-1:000000000000:rule/sentinel-local-schedule"],
                "detail": {}
            })
        );
        let parsed: CloudWatchEvent = serde_json::from_value(event).unwrap();
        assert_eq!(parsed.detail_type.as_deref(), Some("Scheduled Event"));
        assert_eq!(parsed.time, time);
    }
}
