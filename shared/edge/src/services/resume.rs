//! Where a daily run over the account's volumes resumes.
//!
//! expire-snapshots, tag-snapshots' backfill, report-snapshots,
//! archive-snapshots and vault-snapshots work through the volumes 200 at a
//! time, in volume-id order. A run that its deadline (or throttling, or a
//! batch EC2 would not list) stops records the first volume it did not
//! finish in the stack's ledger (`cursor` / the function's name); the next
//! run starts there and wraps round to the first volume, so every volume is
//! visited within `ceil(volumes / volumes per run)` runs however large the
//! account (docs/operations.md, "The ledger"). A run that goes all the way
//! round clears the record.

use serde::Serialize;

use crate::lambda::deadline::Deadline;
use crate::pacing::VOLUMES_PER_BATCH;
use crate::ports::ledger::{Ledger, LedgerError};

/// Where a run started and stopped, as its summary says it (flattened into
/// expire-snapshots', tag-snapshots', report-snapshots' and
/// vault-snapshots' summaries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The volume this run started at: where the last run stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<String>,
    /// The volume the next run starts at (None: this run went round).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    /// Why the run stopped there before its deadline: EC2 would not list
    /// that batch (after the SDK's retries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by_error: Option<String>,
    /// Where this run stopped could not be recorded (the next run starts at
    /// the first volume: it revisits, never skips).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecorded: Option<String>,
}

/// One run's resume point: read at the start, written at the end.
#[derive(Debug)]
struct Resume {
    name: &'static str,
    /// Where the previous run stopped (None: it finished).
    was: Option<String>,
    /// Where this run stopped (None: it finished).
    stopped_at: Option<String>,
    /// Why, if a batch EC2 would not list stopped it.
    stopped_by_error: Option<String>,
}

impl Resume {
    /// Read where the last run stopped and put the volumes from there first.
    /// `volume_ids` must be sorted (they come from a `BTreeSet`). If the
    /// ledger cannot be read the run starts at the first volume: it only
    /// revisits volumes, never skips one.
    async fn start(ledger: &dyn Ledger, name: &'static str, volume_ids: &mut [String]) -> Self {
        let was = match ledger.cursor(name).await {
            Ok(was) => was,
            Err(e) => {
                tracing::warn!(error = %e, function = name, "where the last run stopped is not known; this run starts at the first volume");
                None
            }
        };
        Self::from(name, was, volume_ids)
    }

    /// The resume point `was` (read from the ledger), the volumes from
    /// there first.
    fn from(name: &'static str, was: Option<String>, volume_ids: &mut [String]) -> Self {
        if let Some(cursor) = was.as_deref() {
            rotate_to(volume_ids, cursor);
        }
        Self {
            name,
            was,
            stopped_at: None,
            stopped_by_error: None,
        }
    }

    /// The run stops before finishing `volume_id` (the first call counts).
    fn stop_at(&mut self, volume_id: &str) {
        self.stopped_at.get_or_insert_with(|| volume_id.to_owned());
    }

    /// A batch's listing failed (EC2, after the SDK's retries) at
    /// `volume_id`, the batch's first volume, after `done` batches of this
    /// run. With batches done, the run stops there as at its deadline: what
    /// it did stands, the next run starts at the failed batch, and `Ok` is
    /// why (`stopped_by_error`). With none done it fails (`Err`, the error
    /// given back): it would have nothing to show, and an invocation's error
    /// is what Lambda's retry and the errors alarm see.
    fn stop_on_failure<E: std::fmt::Display>(
        &mut self,
        done: usize,
        volume_id: &str,
        error: E,
    ) -> Result<String, E> {
        if done == 0 {
            return Err(error);
        }
        tracing::warn!(%error, volume_id, function = self.name, "a batch could not be listed; the run stops here and the next one starts at it");
        self.stop_at(volume_id);
        let why = format!("stopped at {volume_id}: {error}");
        Ok(self.stopped_by_error.get_or_insert(why).clone())
    }

    /// [`Self::finish`], a warning if it cannot be recorded (the next run
    /// then starts at the first volume: it revisits, never skips), and what
    /// the summary says.
    async fn conclude(self, ledger: &dyn Ledger) -> Progress {
        let mut said = Progress {
            resumed_at: self.was.clone(),
            stopped_at: self.stopped_at.clone(),
            stopped_by_error: self.stopped_by_error.clone(),
            unrecorded: None,
        };
        if let Err(e) = self.finish(ledger).await {
            tracing::warn!(error = %e, "could not record where this run stopped; the next run starts at the first volume");
            said.unrecorded = Some(format!("could not record where this run stopped: {e}"));
        }
        said
    }

    /// Record where this run stopped (or that it finished) for the next one.
    async fn finish(self, ledger: &dyn Ledger) -> Result<(), LedgerError> {
        if self.stopped_at == self.was {
            return Ok(());
        }
        ledger
            .set_cursor(self.name, self.stopped_at.as_deref())
            .await
    }
}

/// A daily run's walk over volumes, [`VOLUMES_PER_BATCH`] at a time, from
/// where the last run stopped. The function asks for each batch
/// ([`Walk::next_batch`]); the walk ends at the deadline, where the function
/// stops it ([`Walk::stop_at`], [`Walk::cut_short`]) or at a batch EC2
/// would not list ([`Walk::failed`]), and [`Walk::conclude`] records where
/// the next run starts.
#[derive(Debug)]
pub struct Walk {
    resume: Resume,
    volume_ids: Vec<String>,
    /// The index of the next batch.
    next: usize,
    /// The walk ended (it stopped somewhere, or failed).
    stopped: bool,
}

impl Walk {
    /// Start the walk over `volume_ids` (sorted: they come from a
    /// `BTreeSet`) where the function `name`'s last run stopped.
    pub async fn start(
        ledger: &dyn Ledger,
        name: &'static str,
        mut volume_ids: Vec<String>,
    ) -> Self {
        let resume = Resume::start(ledger, name, &mut volume_ids).await;
        Self::over(resume, volume_ids)
    }

    fn over(resume: Resume, volume_ids: Vec<String>) -> Self {
        Self {
            resume,
            volume_ids,
            next: 0,
            stopped: false,
        }
    }

    /// How many volumes the walk goes over.
    pub fn len(&self) -> usize {
        self.volume_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.volume_ids.is_empty()
    }

    /// How many batches come after the one last handed out.
    pub fn batches_left(&self) -> usize {
        self.volume_ids
            .len()
            .div_ceil(VOLUMES_PER_BATCH)
            .saturating_sub(self.next)
    }

    /// The next batch's volume ids, or None: the walk went round, was
    /// stopped, or `deadline` is near (then the next run starts at this
    /// batch, unless the walk was stopped earlier).
    pub fn next_batch(&mut self, deadline: &Deadline) -> Option<Vec<String>> {
        let start = self.next * VOLUMES_PER_BATCH;
        let batch = self.volume_ids.get(start..)?.first()?;
        if !self.stopped && deadline.is_near() {
            self.resume.stop_at(batch);
            self.stopped = true;
        }
        if self.stopped {
            return None;
        }
        let end = (start + VOLUMES_PER_BATCH).min(self.volume_ids.len());
        self.next += 1;
        Some(self.volume_ids[start..end].to_vec())
    }

    /// The first volume of the batch last handed out.
    fn current(&self) -> Option<&str> {
        let start = self.next.checked_sub(1)? * VOLUMES_PER_BATCH;
        self.volume_ids.get(start).map(String::as_str)
    }

    /// The run stops before finishing `volume_id`: the next run starts there
    /// (the first stop counts) and no batch follows.
    pub fn stop_at(&mut self, volume_id: &str) {
        self.resume.stop_at(volume_id);
        self.stopped = true;
    }

    /// The batch last handed out was not finished (its work was cut short
    /// by the deadline or a budget): the next run starts at it.
    pub fn cut_short(&mut self) {
        if let Some(first) = self.current().map(str::to_owned) {
            self.stop_at(&first);
        }
    }

    /// The batch last handed out could not be listed (EC2, after the SDK's
    /// retries). After a batch or more, the walk stops there as at its
    /// deadline and `Ok` says why; with none done it is the run's failure
    /// (`Err`, the error given back): it would have nothing to show.
    pub fn failed<E: std::fmt::Display>(&mut self, error: E) -> Result<String, E> {
        let done = self.next.saturating_sub(1);
        let first = self.current().unwrap_or_default().to_owned();
        let why = self.resume.stop_on_failure(done, &first, error)?;
        self.stopped = true;
        // Not done: it counts as not reached.
        self.next = done;
        Ok(why)
    }

    /// The volumes of the batches the walk did not reach (a batch that
    /// failed included; one cut short is counted as reached).
    pub fn not_reached(&self) -> &[String] {
        let from = (self.next * VOLUMES_PER_BATCH).min(self.volume_ids.len());
        &self.volume_ids[from..]
    }

    /// Record where the next run starts; what the summary says of it.
    pub async fn conclude(self, ledger: &dyn Ledger) -> Progress {
        self.resume.conclude(ledger).await
    }
}

/// Rotate sorted `volume_ids` so that the first one at or after `cursor`
/// comes first (the cursor's volume may be gone since).
pub(crate) fn rotate_to(volume_ids: &mut [String], cursor: &str) {
    let at = volume_ids.partition_point(|v| v.as_str() < cursor);
    volume_ids.rotate_left(at);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_failed_batch_stops_the_run_there_unless_it_was_the_first() {
        let mut resume = Resume {
            name: "test",
            was: Some("vol-1".into()),
            stopped_at: None,
            stopped_by_error: None,
        };
        assert_eq!(
            resume.stop_on_failure(0, "vol-1", "EC2 is down"),
            Err("EC2 is down"),
            "nothing done: the run fails"
        );
        assert_eq!(resume.stopped_at, None, "and records nothing");
        let said = resume.stop_on_failure(3, "vol-7", "EC2 is down");
        assert_eq!(said.as_deref(), Ok("stopped at vol-7: EC2 is down"));
        assert_eq!(resume.stopped_at.as_deref(), Some("vol-7"));
    }

    #[test]
    fn the_run_starts_where_the_last_stopped_and_wraps_round() {
        let mut v = ids(&["vol-1", "vol-2", "vol-3", "vol-4"]);
        rotate_to(&mut v, "vol-3");
        assert_eq!(v, ids(&["vol-3", "vol-4", "vol-1", "vol-2"]));
    }

    #[test]
    fn a_deleted_cursor_volume_resumes_at_the_next() {
        let mut v = ids(&["vol-1", "vol-2", "vol-4"]);
        rotate_to(&mut v, "vol-3");
        assert_eq!(v, ids(&["vol-4", "vol-1", "vol-2"]));
        let mut v = ids(&["vol-1", "vol-2"]);
        rotate_to(&mut v, "vol-9");
        assert_eq!(v, ids(&["vol-1", "vol-2"]), "past the last: from the first");
    }

    /// A walk over `n` volumes (`vol-00000`...) resumed at `was`.
    fn walk(n: usize, was: Option<&str>) -> Walk {
        let mut volume_ids: Vec<String> = (0..n).map(|i| format!("vol-{i:05}")).collect();
        let resume = Resume::from("test", was.map(str::to_owned), &mut volume_ids);
        Walk::over(resume, volume_ids)
    }

    fn far() -> Deadline {
        Deadline::after(std::time::Duration::from_secs(3600))
    }

    fn near() -> Deadline {
        Deadline::after(std::time::Duration::ZERO)
    }

    #[tokio::test]
    async fn a_walk_resumes_where_the_last_run_stopped_and_goes_round_once() {
        let mut walk = walk(450, Some("vol-00300"));
        let firsts: Vec<String> = std::iter::from_fn(|| walk.next_batch(&far()))
            .map(|b| b[0].clone())
            .collect();
        assert_eq!(
            firsts,
            ["vol-00300", "vol-00050", "vol-00250"].map(String::from)
        );
        assert!(walk.not_reached().is_empty());
        assert_eq!(
            walk.resume.stopped_at, None,
            "went round: the next run starts at the first"
        );
    }

    proptest::proptest! {
        /// However the walk ends (its deadline before batch `k`, batch `k`
        /// cut short, or its listing failed), the next run starts at the
        /// first batch not finished, and what was not reached is exactly
        /// the batches after the last one done.
        #[test]
        fn the_next_run_starts_at_the_first_batch_not_finished(
            n in 0usize..900,
            k in 0usize..6,
            ending in 0u8..3,
        ) {
            // Tokio's clock is not needed: a Deadline is an Instant.
            let batches = n.div_ceil(VOLUMES_PER_BATCH);
            let mut walk = walk(n, None);
            let mut handed = 0;
            let mut failed = None;
            loop {
                let deadline = if handed < k || ending != 0 { far() } else { near() };
                let Some(batch) = walk.next_batch(&deadline) else { break };
                proptest::prop_assert_eq!(&batch[0], &format!("vol-{:05}", handed * VOLUMES_PER_BATCH));
                handed += 1;
                if handed == k + 1 && ending == 1 {
                    walk.cut_short();
                }
                if handed == k + 1 && ending == 2 {
                    failed = Some(walk.failed("EC2 is down").map_err(str::to_owned));
                    break;
                }
            }
            let first_of = |b: usize| (b < batches).then(|| format!("vol-{:05}", b * VOLUMES_PER_BATCH));
            let done = match ending {
                // The deadline before batch k: k batches done.
                0 => k.min(batches),
                // Batch k cut short: done (its rest waits), and the next
                // run starts at it.
                1 => (k + 1).min(batches),
                // Batch k failed: not done, and the run fails when it was
                // the first.
                _ if k == 0 && batches > 0 => {
                    proptest::prop_assert_eq!(failed, Some(Err("EC2 is down".to_string())));
                    return Ok(());
                }
                _ => k.min(batches),
            };
            proptest::prop_assert_eq!(walk.resume.stopped_at.clone(), first_of(k));
            proptest::prop_assert_eq!(walk.not_reached().len(), n - (done * VOLUMES_PER_BATCH).min(n));
            proptest::prop_assert_eq!(walk.batches_left(), batches - done);
        }
    }

    proptest::proptest! {
        /// Runs that each finish `per_run` volumes (the deadline stops them
        /// there) visit every volume within ceil(n / per_run) runs, whatever
        /// volume the first run started at.
        #[test]
        fn every_volume_is_visited_within_the_runs_it_takes(
            n in 1usize..300,
            per_run in 1usize..50,
            first in 0usize..300,
        ) {
            let all: Vec<String> = (0..n).map(|i| format!("vol-{i:05}")).collect();
            let mut cursor = Some(all[first % n].clone());
            let mut visited = std::collections::BTreeSet::new();
            let runs = n.div_ceil(per_run);
            for _ in 0..runs {
                let mut order = all.clone();
                if let Some(c) = cursor.as_deref() {
                    rotate_to(&mut order, c);
                }
                visited.extend(order.iter().take(per_run).cloned());
                cursor = order.get(per_run).cloned();
            }
            proptest::prop_assert_eq!(visited.len(), n);
        }
    }
}
