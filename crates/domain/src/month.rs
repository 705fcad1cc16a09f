//! Calendar months: partition names, S3 prefixes, and which months are past retention.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// One calendar month in UTC, the unit of partitioning and archiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    /// 1 to 12.
    month: u32,
}

impl Month {
    /// The month of `year`-`month`, for years 1970 to 9999 (four digits in names and keys).
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1970..=9999).contains(&year) && (1..=12).contains(&month)).then_some(Self { year, month })
    }

    /// The month holding the instant `at`.
    pub fn of(at: DateTime<Utc>) -> Self {
        Self {
            year: at.year(),
            month: at.month(),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    /// The month `months` later (earlier when negative).
    pub fn plus(self, months: i32) -> Self {
        let index = self.index() + months;
        Self {
            year: index.div_euclid(12),
            month: index.rem_euclid(12) as u32 + 1,
        }
    }

    fn index(self) -> i32 {
        self.year * 12 + self.month as i32 - 1
    }

    /// The first instant of the month: the partition's inclusive lower bound.
    pub fn start(self) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(self.year, self.month, 1, 0, 0, 0)
            .single()
            .expect("the first of a month is a valid UTC instant")
    }

    /// The first instant of the next month: the partition's exclusive upper bound.
    pub fn end(self) -> DateTime<Utc> {
        self.plus(1).start()
    }

    /// The month's first day, as `archive_months.month` stores it.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid date")
    }

    pub fn from_first_day(day: NaiveDate) -> Option<Self> {
        (day.day() == 1).then(|| Self::new(day.year(), day.month()))?
    }

    /// `audit_events_YYYY_MM`, the name `sentinel_ensure_month_partition` gives the partition.
    pub fn partition_name(self) -> String {
        format!("audit_events_{:04}_{:02}", self.year, self.month)
    }

    /// The month a partition named `audit_events_YYYY_MM` holds; `None` for any other name.
    pub fn from_partition_name(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("audit_events_")?;
        let (year, month) = rest.split_once('_')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        if !year
            .bytes()
            .chain(month.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Self::new(year.parse().ok()?, month.parse().ok()?)
    }

    /// The Hive-style folder of the month's objects: `audit_events/year=YYYY/month=MM/`.
    pub fn prefix(self) -> String {
        format!(
            "audit_events/year={:04}/month={:02}/",
            self.year, self.month
        )
    }

    /// The key of the month's `n`th Parquet file.
    pub fn part_key(self, n: usize) -> String {
        format!("{}part-{n:05}.parquet", self.prefix())
    }

    /// The key of the month's manifest.
    pub fn manifest_key(self) -> String {
        format!("{}_manifest.json", self.prefix())
    }

    /// The second key of the month's advisory lock (the first names the archiver).
    pub fn lock_key(self) -> i32 {
        self.index()
    }

    /// Whether the month is past retention at `now`.
    ///
    /// A month is past retention when it ended on or before the first day of the month
    /// `retention_months` before the current one. With 3 months in February 2026, October
    /// 2025 and earlier are past retention; November, December, January and February stay.
    /// So the current month and the `retention_months` full months before it are kept, no
    /// event younger than `retention_months` months is ever archived, and the current and
    /// future months never are, whatever the setting.
    pub fn is_past_retention(self, now: DateTime<Utc>, retention_months: u32) -> bool {
        self < Self::of(now).plus(-(retention_months as i32))
    }
}

impl fmt::Display for Month {
    /// `YYYY-MM`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn months_step_across_year_boundaries() {
        let january = Month::new(2026, 1).unwrap();
        assert_eq!(january.plus(-1), Month::new(2025, 12).unwrap());
        assert_eq!(january.plus(-13), Month::new(2024, 12).unwrap());
        assert_eq!(january.plus(11), Month::new(2026, 12).unwrap());
        assert_eq!(january.plus(12), Month::new(2027, 1).unwrap());
    }

    #[test]
    fn a_month_spans_from_its_first_instant_to_the_next_months_exclusive() {
        let december = Month::new(2025, 12).unwrap();
        assert_eq!(december.start(), at("2025-12-01T00:00:00Z"));
        assert_eq!(december.end(), at("2026-01-01T00:00:00Z"));
        assert_eq!(Month::of(at("2025-12-31T23:59:59.999999Z")), december);
        assert_eq!(Month::of(at("2026-01-01T00:00:00Z")), december.plus(1));
    }

    #[test]
    fn partition_names_and_keys_round_trip() {
        let month = Month::new(2024, 2).unwrap();
        assert_eq!(month.partition_name(), "audit_events_2024_02");
        assert_eq!(
            Month::from_partition_name("audit_events_2024_02"),
            Some(month)
        );
        assert_eq!(
            month.part_key(3),
            "audit_events/year=2024/month=02/part-00003.parquet"
        );
        assert_eq!(
            month.manifest_key(),
            "audit_events/year=2024/month=02/_manifest.json"
        );
        assert_eq!(month.to_string(), "2024-02");
        assert_eq!(Month::from_first_day(month.first_day()), Some(month));
    }

    #[test]
    fn other_tables_are_not_taken_for_month_partitions() {
        for name in [
            "audit_events",
            "audit_events_2024_2",
            "audit_events_2024_13",
            "audit_events_2024_02_old",
            "audit_events_default",
            "event_ids",
        ] {
            assert_eq!(Month::from_partition_name(name), None, "{name}");
        }
    }

    #[test]
    fn retention_keeps_the_current_month_and_the_retention_months_before_it() {
        let now = at("2026-02-15T12:00:00Z");
        let past: Vec<bool> = [
            (2025, 9),
            (2025, 10),
            (2025, 11),
            (2025, 12),
            (2026, 1),
            (2026, 2),
            (2026, 3),
        ]
        .iter()
        .map(|&(y, m)| Month::new(y, m).unwrap().is_past_retention(now, 3))
        .collect();
        assert_eq!(past, [true, true, false, false, false, false, false]);
    }

    #[test]
    fn the_retention_boundary_moves_at_the_first_instant_of_a_month() {
        let october = Month::new(2025, 10).unwrap();
        let november = Month::new(2025, 11).unwrap();
        assert!(!october.is_past_retention(at("2026-01-31T23:59:59.999999Z"), 3));
        assert!(october.is_past_retention(at("2026-02-01T00:00:00Z"), 3));
        assert!(!november.is_past_retention(at("2026-02-28T23:59:59Z"), 3));
    }

    #[test]
    fn zero_retention_still_never_touches_the_current_month() {
        let now = at("2026-02-01T00:00:00Z");
        assert!(Month::new(2026, 1).unwrap().is_past_retention(now, 0));
        assert!(!Month::of(now).is_past_retention(now, 0));
        assert!(!Month::of(now).plus(1).is_past_retention(now, 0));
    }
}
