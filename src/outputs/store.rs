//! The results of a study as one value, `Results`: every run's row and
//! every failure, in plan order, with what the session knows about the study
//! (its config, data, device). The monitor and `--batch` record into it as
//! runs end; `publish` writes it out.
//!
//! Several processes may write one results directory (the shards of a Slurm
//! array): each writes under an exclusive lock on `<dir>/.kdtui.lock` and
//! first merges what the others recorded (every run it did not record itself
//! is taken from results.json on disk), so the last writer's files hold every
//! run, each once.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::stats::{self, Group};
use crate::protocol::{RunResult, RunStatus};
use crate::study::{Loss, RunKind, RunSpec};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub plan: String,
    pub data: String,
    pub test_images: usize,
    pub device: String,
    /// The config that produced the results, verbatim.
    pub config: String,
    /// `Config::study_hash` of that config: a later session with the same
    /// hash continues these results.
    #[serde(default)]
    pub study_hash: String,
    /// Every run of the study has a result (a row, not a failure).
    pub finished: bool,
    /// The last session that wrote these files was stopped before its end.
    pub stopped: bool,
    /// Every run of the study (the config's whole plan) in plan order: the
    /// order of the table, and what `finished` is measured against.
    #[serde(default)]
    pub planned: Vec<RunSpec>,
    pub runs: Vec<RunResult>,
    pub failures: Vec<Failure>,
    /// Runs this session recorded (a row or a failure): in a directory other
    /// processes write too, these are ours and the rest are theirs.
    #[serde(skip)]
    pub own: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub run_id: String,
    pub error: String,
}

impl Results {
    /// The study's cells (kind, loss, T) over their seeds.
    pub fn groups(&self) -> Vec<Group> {
        stats::groups(&self.runs)
    }

    /// The seeds the plan trains its students on, ascending (the teacher's
    /// is not among them unless a student shares it).
    pub fn student_seeds(&self) -> Vec<u64> {
        let mut seeds: Vec<u64> = self.planned.iter().filter(|p| p.kind != RunKind::Teacher).map(|p| p.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        seeds
    }

    /// The losses the report's columns and the figures' lines show, in
    /// registry order: the original study's three (its numbers stand beside
    /// ours even where the plan does not run them), and every other the
    /// plan (or, in files without a plan, a row) has.
    pub fn losses(&self) -> Vec<Loss> {
        let planned = self.planned.iter().filter(|p| p.kind == RunKind::Distill).map(|p| p.loss);
        let ran = self.runs.iter().filter(|r| r.kind == RunKind::Distill).map(|r| r.loss);
        let mut losses: Vec<Loss> = Loss::DISTILLATION.into_iter().chain(planned).chain(ran).collect();
        losses.sort_unstable_by_key(|l| l.index());
        losses.dedup();
        losses
    }

    /// Records a finished run, replacing an earlier row of the same run.
    pub fn record(&mut self, result: RunResult) {
        self.own.insert(result.run_id.clone());
        self.failures.retain(|f| f.run_id != result.run_id);
        match self.runs.iter_mut().find(|r| r.run_id == result.run_id) {
            Some(slot) => *slot = result,
            None => self.runs.push(result),
        }
    }

    pub fn record_failure(&mut self, run_id: String, error: String) {
        self.own.insert(run_id.clone());
        self.failures.retain(|f| f.run_id != run_id);
        self.failures.push(Failure { run_id, error });
    }

    /// Takes what other writers of `disk` (the same study) recorded for the
    /// runs this session has not: their rows and failures replace ours.
    pub(super) fn merge(&mut self, disk: Results) {
        if disk.study_hash != self.study_hash {
            return;
        }
        let theirs: BTreeSet<String> = disk
            .runs
            .iter()
            .map(|r| &r.run_id)
            .chain(disk.failures.iter().map(|f| &f.run_id))
            .filter(|id| !self.own.contains(*id))
            .cloned()
            .collect();
        self.runs.retain(|r| !theirs.contains(&r.run_id));
        self.failures.retain(|f| !theirs.contains(&f.run_id));
        self.runs.extend(disk.runs.into_iter().filter(|r| theirs.contains(&r.run_id)));
        self.failures.extend(disk.failures.into_iter().filter(|f| theirs.contains(&f.run_id)));
    }

    /// Rows in plan order (whoever finished first), and `finished` from them.
    pub(super) fn settle(&mut self) {
        let planned = &self.planned;
        let position = |id: &str| planned.iter().position(|p| p.run_id == id).unwrap_or(usize::MAX);
        self.runs.sort_by_key(|r| position(&r.run_id));
        self.failures.sort_by_key(|f| position(&f.run_id));
        self.finished = !self.planned.is_empty()
            && self.planned.iter().all(|p| self.runs.iter().any(|r| r.run_id == p.run_id && r.status != RunStatus::Interrupted));
    }
}
