//! The tree check: the log's entries arrive in log-index order, from any [`crate::source`]
//! (PostgreSQL's rows now; an archived month's Parquet later), and are folded into two
//! [`Frontier`]s, O(log n) hashes each, never all leaves:
//!
//! - the *rows'* tree: each leaf recomputed from its row (the logged leaf where the row is not
//!   recomputed: outside `--from/--to`, archived, or gone);
//! - the *log's* tree: the leaf hashes `log_entries` holds. It is only kept apart once a row
//!   and its logged leaf first differ; until then the two trees are one.
//!
//! At each signed checkpoint's size both roots are compared with the signed root. Which one
//! matches tells whether a differing row or its log entry was changed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sentinel_domain::merkle::{Frontier, Hash};
use sentinel_domain::Month;

use crate::checkpoints::{rfc3339, ValidCheckpoint};
use crate::findings::{CheckpointRef, EventRef, Finding, Store};

/// Findings of one kind listed one by one at most; the rest are counted.
pub const MAX_LISTED: usize = 1000;
/// Deleted rows listed one by one per month.
pub const MAX_LISTED_PER_MONTH: usize = 100;

/// One leaf of the log, with what its row gave.
#[derive(Debug, Clone)]
pub struct LeafEntry {
    pub index: u64,
    /// The leaf hash the log holds for it.
    pub logged: Hash,
    pub event_id: String,
    pub occurred_at: DateTime<Utc>,
    pub row: RowCheck,
}

/// What the event's row gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowCheck {
    /// The leaf recomputed from the row.
    Recomputed(Hash),
    /// The row breaks the event's rules.
    Unreadable(String),
    /// No row (and its month is not archived).
    Missing,
    /// Not recomputed: `occurred_at` outside `--from/--to`.
    OutOfRange,
    /// Its month is archived (archive_months): the archive's leaf source checks it.
    Archived,
}

/// A checkpoint the tree must meet.
#[derive(Debug, Clone)]
pub struct Check {
    pub size: u64,
    pub root: Hash,
    pub reference: CheckpointRef,
    /// The checkpoint trusted on an earlier run (state directory), not one found now.
    pub trusted: bool,
}

impl Check {
    pub fn signed(c: &ValidCheckpoint) -> Self {
        Self {
            size: c.size,
            root: c.root,
            reference: c.reference(),
            trusted: false,
        }
    }
}

#[derive(Debug, Clone)]
struct Mismatch {
    event: EventRef,
    recomputed: Hash,
    logged: Hash,
    /// Decided by the first checkpoint that covers it.
    resolved: Option<Finding>,
}

#[derive(Debug, Default)]
struct MonthTally {
    logged: u64,
    missing: u64,
    first_missing: u64,
    last_missing: u64,
    listed: Vec<EventRef>,
}

/// Counts of events, as the report gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EventCounts {
    /// Log entries read.
    pub log_entries: u64,
    /// Events whose rows were recomputed, or found missing, or inserted: what "N/M events
    /// valid" counts.
    pub checked: u64,
    pub valid: u64,
    /// Entries outside `--from/--to`: their logged leaves were used, not recomputed.
    pub outside_range: u64,
    /// Entries of archived months: their logged leaves were used (the archive is not read yet).
    pub archived: u64,
    /// Rows without a log entry.
    pub inserted: u64,
}

/// The tree check's state.
pub struct Engine {
    checks: Vec<Check>,
    next_check: usize,
    rows: Frontier,
    /// `None` while the log's tree is the rows' tree.
    log: Option<Frontier>,
    expected: u64,
    /// The first missing index: the trees stop there.
    broken_at: Option<u64>,
    mismatches: Vec<Mismatch>,
    unresolved_from: usize,
    mismatches_not_listed: u64,
    unreadable_listed: usize,
    unreadable_not_listed: u64,
    months: BTreeMap<Month, MonthTally>,
    counts: EventCounts,
    failed_checkpoints: HashSet<String>,
    findings: Vec<Finding>,
    /// Checkpoint sizes whose root failed with no differing row to explain it.
    unexplained: Vec<u64>,
}

impl Engine {
    /// `checks` in any order; each is checked when the trees reach its size.
    pub fn new(mut checks: Vec<Check>) -> Self {
        checks.sort_by_key(|c| c.size);
        let mut engine = Self {
            checks,
            next_check: 0,
            rows: Frontier::new(),
            log: None,
            expected: 0,
            broken_at: None,
            mismatches: Vec::new(),
            unresolved_from: 0,
            mismatches_not_listed: 0,
            unreadable_listed: 0,
            unreadable_not_listed: 0,
            months: BTreeMap::new(),
            counts: EventCounts::default(),
            failed_checkpoints: HashSet::new(),
            findings: Vec::new(),
            unexplained: Vec::new(),
        };
        engine.run_checks();
        engine
    }

    /// The next entry; entries come in increasing log-index order.
    pub fn push(&mut self, entry: LeafEntry) {
        self.counts.log_entries += 1;
        if entry.index > self.expected {
            self.findings.push(Finding::LogGap {
                first_index: self.expected,
                last_index: entry.index - 1,
            });
            self.broken_at.get_or_insert(self.expected);
        } else if entry.index < self.expected {
            // Out of order or repeated: the source broke its contract.
            self.findings.push(Finding::LogGap {
                first_index: entry.index,
                last_index: entry.index,
            });
            self.broken_at.get_or_insert(entry.index);
            return;
        }
        self.expected = entry.index + 1;
        let month = Month::of(entry.occurred_at);
        let tally = self.months.entry(month).or_default();
        tally.logged += 1;
        let event = || EventRef {
            event_id: entry.event_id.clone(),
            log_index: Some(entry.index),
            month: month.to_string(),
        };
        let leaf = match &entry.row {
            RowCheck::Recomputed(leaf) => {
                self.counts.checked += 1;
                if *leaf == entry.logged {
                    self.counts.valid += 1;
                } else {
                    if self.mismatches.len() < MAX_LISTED {
                        self.mismatches.push(Mismatch {
                            event: event(),
                            recomputed: *leaf,
                            logged: entry.logged,
                            resolved: None,
                        });
                    } else {
                        self.mismatches_not_listed += 1;
                    }
                    if self.log.is_none() && self.broken_at.is_none() {
                        self.log = Some(self.rows.clone());
                    }
                }
                *leaf
            }
            RowCheck::Unreadable(reason) => {
                self.counts.checked += 1;
                if self.unreadable_listed < MAX_LISTED {
                    self.unreadable_listed += 1;
                    self.findings.push(Finding::RowUnreadable {
                        event: event(),
                        reason: reason.clone(),
                    });
                } else {
                    self.unreadable_not_listed += 1;
                }
                entry.logged
            }
            RowCheck::Missing => {
                self.counts.checked += 1;
                if tally.missing == 0 {
                    tally.first_missing = entry.index;
                }
                tally.missing += 1;
                tally.last_missing = entry.index;
                if tally.listed.len() < MAX_LISTED_PER_MONTH {
                    tally.listed.push(event());
                }
                entry.logged
            }
            RowCheck::OutOfRange => {
                self.counts.outside_range += 1;
                entry.logged
            }
            RowCheck::Archived => {
                self.counts.archived += 1;
                entry.logged
            }
        };
        if self.broken_at.is_some() {
            return;
        }
        self.rows.append(leaf).expect("fewer than 2^64 leaves");
        if let Some(log) = &mut self.log {
            log.append(entry.logged).expect("fewer than 2^64 leaves");
        }
        self.run_checks();
    }

    /// A row of the tenant that has no log entry.
    pub fn inserted(&mut self, event: EventRef, listed: bool) {
        self.counts.inserted += 1;
        self.counts.checked += 1;
        if listed {
            self.findings.push(Finding::RowInserted { event });
        }
    }

    /// Checks every checkpoint whose size the trees have reached.
    fn run_checks(&mut self) {
        while let Some(check) = self.checks.get(self.next_check) {
            if check.size != self.rows.size() || self.broken_at.is_some() {
                break;
            }
            let check = check.clone();
            self.next_check += 1;
            let rows = self.rows.root();
            let log = self.log.as_ref().map_or(rows, Frontier::root);
            let covered = self.unresolved_from..self.mismatches.len();
            let verdict = if rows == check.root {
                Some(Verdict::LogEdited)
            } else if log == check.root {
                Some(Verdict::RowEdited)
            } else {
                None
            };
            match verdict {
                Some(verdict) => {
                    for m in &mut self.mismatches[covered.clone()] {
                        m.resolved = Some(match verdict {
                            Verdict::LogEdited => Finding::LogEntryEdited {
                                event: m.event.clone(),
                            },
                            Verdict::RowEdited => Finding::RowEdited {
                                event: m.event.clone(),
                            },
                        });
                    }
                }
                None => {
                    self.failed_checkpoints
                        .insert(check.reference.location.clone());
                    if check.trusted {
                        self.findings.push(Finding::InconsistentWithTrusted {
                            trusted: check.reference.clone(),
                            rebuilt_root: rows.to_base64(),
                        });
                    } else {
                        self.findings.push(Finding::RootMismatch {
                            checkpoint: check.reference.clone(),
                            rebuilt_root: rows.to_base64(),
                            signed_root: check.root.to_base64(),
                        });
                    }
                    if covered.is_empty() && self.mismatches.len() == self.unresolved_from {
                        self.unexplained.push(check.size);
                    }
                    for m in &mut self.mismatches[covered.clone()] {
                        m.resolved = Some(Finding::RowDiffersFromLog {
                            event: m.event.clone(),
                            covered: true,
                        });
                    }
                }
            }
            self.unresolved_from = self.mismatches.len();
        }
    }

    /// Checkpoint sizes whose root failed with no differing row to explain it: where the
    /// runner may look for moved leaves.
    pub fn unexplained_failures(&self) -> &[u64] {
        &self.unexplained
    }

    /// The index one past the last entry read.
    pub fn end(&self) -> u64 {
        self.expected
    }

    /// Ends the check. `recorded_size` is the log's size as tenant_logs holds it;
    /// `attached` the months whose partition is attached.
    pub fn finish(
        mut self,
        recorded_size: Option<u64>,
        attached: &BTreeSet<Month>,
        extra: Vec<Finding>,
    ) -> (Vec<Finding>, EventCounts, HashSet<String>) {
        let end = self.expected;
        // Checkpoints never reached: past a missing index, or past the log's end.
        let mut beyond_end: Option<Check> = None;
        let remaining: Vec<Check> = self.checks.drain(self.next_check..).collect();
        for check in remaining {
            if let Some(at) = self.broken_at.filter(|&at| check.size > at) {
                if check.size <= end {
                    self.failed_checkpoints
                        .insert(check.reference.location.clone());
                    self.findings.push(Finding::CheckpointUnverifiable {
                        checkpoint: check.reference.clone(),
                        reason: format!(
                            "its tree cannot be rebuilt: log index {} is missing",
                            crate::findings::group(at)
                        ),
                    });
                    continue;
                }
            }
            if check.size > end {
                if !check.trusted {
                    self.failed_checkpoints
                        .insert(check.reference.location.clone());
                }
                beyond_end = Some(check);
            }
        }
        if let Some(check) = beyond_end.filter(|c| !c.trusted) {
            self.findings.push(Finding::NewestEventsDeleted {
                checkpoint: check.reference.clone(),
                log_entries: end,
                missing: check.size - end,
            });
        }
        if let Some(recorded) = recorded_size {
            if recorded != end {
                self.findings.push(Finding::LogSizeMismatch {
                    recorded_size: recorded,
                    log_entries: end,
                });
            }
        }
        // Rows and logged leaves that differ: swapped pairs first, then each as decided.
        let by_logged: HashMap<Hash, usize> = self
            .mismatches
            .iter()
            .enumerate()
            .map(|(i, m)| (m.logged, i))
            .collect();
        let mut paired = vec![false; self.mismatches.len()];
        for i in 0..self.mismatches.len() {
            if paired[i] {
                continue;
            }
            let m = &self.mismatches[i];
            if let Some(&j) = by_logged.get(&m.recomputed) {
                let other = &self.mismatches[j];
                if j != i && !paired[j] && other.recomputed == m.logged {
                    paired[i] = true;
                    paired[j] = true;
                    self.findings.push(Finding::Swapped {
                        first: m.event.clone(),
                        second: other.event.clone(),
                    });
                }
            }
        }
        for (m, paired) in self.mismatches.iter().zip(paired) {
            if !paired {
                self.findings
                    .push(m.resolved.clone().unwrap_or(Finding::RowDiffersFromLog {
                        event: m.event.clone(),
                        covered: false,
                    }));
            }
        }
        if self.mismatches_not_listed > 0 {
            self.findings.push(Finding::NotListed {
                of_kind: "row_differs_from_log".into(),
                more: self.mismatches_not_listed,
            });
        }
        if self.unreadable_not_listed > 0 {
            self.findings.push(Finding::NotListed {
                of_kind: "row_unreadable".into(),
                more: self.unreadable_not_listed,
            });
        }
        // Missing rows, per month: a whole month gone is one finding.
        for (month, tally) in &self.months {
            if tally.missing == 0 {
                continue;
            }
            let attached = attached.contains(month);
            let whole = tally.missing == tally.logged && (!attached || tally.missing > 1);
            if whole || !attached {
                self.findings.push(Finding::MonthMissing {
                    month: month.to_string(),
                    missing: tally.missing,
                    first_log_index: tally.first_missing,
                    last_log_index: tally.last_missing,
                    partition_attached: attached,
                });
                continue;
            }
            for event in &tally.listed {
                self.findings.push(Finding::RowDeleted {
                    event: event.clone(),
                });
            }
            let more = tally.missing - tally.listed.len() as u64;
            if more > 0 {
                self.findings.push(Finding::MoreRowsDeleted {
                    month: month.to_string(),
                    more,
                });
            }
        }
        self.findings.extend(extra);
        // Valid counts what was recomputed and equal; a deleted row is not valid.
        (self.findings, self.counts, self.failed_checkpoints)
    }
}

#[derive(Clone, Copy)]
enum Verdict {
    LogEdited,
    RowEdited,
}

/// The reference of the checkpoint trusted on an earlier run.
pub fn trusted_reference(c: &ValidCheckpoint) -> CheckpointRef {
    CheckpointRef {
        size: Some(c.size),
        signed_at: Some(rfc3339(c.signed_at)),
        location: format!("{} ({})", c.key, Store::State),
    }
}
