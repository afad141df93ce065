//! The plan: the ordered list of runs a config asks for.
//!
//! Run ids: `teacher`, `baseline-s<seed>`, `<loss>-T<temperature>-s<seed>`.
//! A selector (from `--only` or `[plan] only`) picks a run when it equals the
//! run id or is a prefix of it ending at a `-`: `soft` picks every soft run,
//! `soft-T5` every seed of it, `baseline` every baseline. The teacher always
//! runs (or is loaded) first: every distillation run needs its targets.
//!
//! Shards (`--shard I/N`, one per Slurm array task): the plan's runs other
//! than the teacher, numbered k = 0, 1, ... in plan order, go round-robin:
//! run k belongs to shard k mod N. The assignment depends on the config
//! alone (not on `--only`), so every task of an array agrees on it, and
//! neighbouring runs (the seeds and temperatures of one loss) spread over
//! the shards.

use serde::{Deserialize, Serialize};

use crate::study::{Config, Loss};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Teacher,
    Baseline,
    Distill,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub run_id: String,
    pub kind: RunKind,
    pub loss: Loss,
    pub temperature: Option<f64>,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("--only {selectors:?} names no run of the plan; run ids look like: {examples}")]
pub struct NoRunSelected {
    pub selectors: Vec<String>,
    pub examples: String,
}

pub fn format_temperature(t: f64) -> String {
    if t.fract() == 0.0 {
        format!("{t:.0}")
    } else {
        format!("{t}")
    }
}

/// Every run of the config, in order, before selection.
pub fn full_plan(config: &Config) -> Vec<RunSpec> {
    let seeds = &config.plan.seeds;
    let mut runs = vec![RunSpec { run_id: "teacher".into(), kind: RunKind::Teacher, loss: Loss::Hard, temperature: None, seed: seeds[0] }];
    if config.plan.baseline {
        runs.extend(seeds.iter().map(|&seed| RunSpec {
            run_id: format!("baseline-s{seed}"),
            kind: RunKind::Baseline,
            loss: Loss::Hard,
            temperature: None,
            seed,
        }));
    }
    for &loss in &config.plan.losses {
        for &t in &config.plan.temperatures {
            for &seed in seeds {
                runs.push(RunSpec {
                    run_id: format!("{}-T{}-s{seed}", loss.name(), format_temperature(t)),
                    kind: RunKind::Distill,
                    loss,
                    temperature: Some(t),
                    seed,
                });
            }
        }
    }
    runs
}

/// Shard `index` of `count` (`--shard I/N`, I from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("--shard {0:?}: expected I/N with 0 <= I < N (as Slurm's $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT for an array 0-(N-1))")]
pub struct BadShard(pub String);

impl std::str::FromStr for Shard {
    type Err = BadShard;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadShard(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The runs of the full plan that shard `shard` trains (the teacher is in none).
pub fn shard_members(config: &Config, shard: Shard) -> Vec<String> {
    full_plan(config)
        .into_iter()
        .filter(|r| r.kind != RunKind::Teacher)
        .enumerate()
        .filter(|(k, _)| k % shard.count == shard.index)
        .map(|(_, r)| r.run_id)
        .collect()
}

fn selects(selector: &str, run_id: &str) -> bool {
    run_id == selector || run_id.strip_prefix(selector).is_some_and(|rest| rest.starts_with('-'))
}

/// The runs to execute: all, or those the selectors pick plus the teacher.
pub fn select(config: &Config, selectors: &[String]) -> Result<Vec<RunSpec>, NoRunSelected> {
    let runs = full_plan(config);
    let selectors: Vec<String> =
        selectors.iter().flat_map(|s| s.split(',')).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if selectors.is_empty() {
        return Ok(runs);
    }
    let picked: Vec<RunSpec> =
        runs.iter().filter(|r| r.kind == RunKind::Teacher || selectors.iter().any(|s| selects(s, &r.run_id))).cloned().collect();
    let teacher_selected = selectors.iter().any(|s| s == "teacher");
    if picked.len() == 1 && !teacher_selected {
        let examples = runs.iter().take(4).map(|r| r.run_id.as_str()).collect::<Vec<_>>().join(", ");
        return Err(NoRunSelected { selectors, examples });
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_has_the_study_runs() {
        let runs = full_plan(&Config::default());
        assert_eq!(runs.len(), 1 + 16 * 3, "the teacher, then 16 cells over 3 seeds");
        assert_eq!(runs[0].run_id, "teacher");
        assert_eq!(runs[1].run_id, "baseline-s1");
        assert_eq!(runs[3].run_id, "baseline-s3");
        assert_eq!(runs[4].run_id, "soft-T5-s1");
        assert_eq!(runs[48].run_id, "gt_soft-T100-s3");
    }

    #[test]
    fn seeds_repeat_student_runs_only() {
        let mut c = Config::default();
        c.plan.seeds = vec![1, 2, 3];
        let runs = full_plan(&c);
        assert_eq!(runs.len(), 1 + 3 + 15 * 3);
        assert_eq!(runs.iter().filter(|r| r.kind == RunKind::Teacher).count(), 1);
    }

    #[test]
    fn shards_split_the_student_runs_round_robin() {
        let mut c = Config::default();
        c.plan.seeds = vec![1];
        let students: Vec<String> = full_plan(&c).into_iter().skip(1).map(|r| r.run_id).collect();
        let shards: Vec<Vec<String>> = (0..3).map(|index| shard_members(&c, Shard { index, count: 3 })).collect();
        // Students in plan order: baseline-s1, soft-T5, soft-T15, soft-T25, soft-T50, ...
        assert_eq!(shards[0][..2], ["baseline-s1", "soft-T25-s1"]);
        assert_eq!(shards[1][..2], ["soft-T5-s1", "soft-T50-s1"]);
        assert_eq!(shards.iter().map(Vec::len).collect::<Vec<_>>(), [6, 5, 5]);
        let mut all: Vec<String> = shards.concat();
        all.sort();
        let mut expected = students.clone();
        expected.sort();
        assert_eq!(all, expected, "every student run in exactly one shard");
        assert_eq!(shard_members(&c, Shard { index: 0, count: 1 }), students);
        assert!(shard_members(&c, Shard { index: 20, count: 21 }).is_empty());
    }

    #[test]
    fn shard_parses_slurm_style() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(Shard { index: 2, count: 4 }.to_string(), "2/4");
        for bad in ["4/4", "1", "a/b", "-1/3", "1/0", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_pick_by_id_or_prefix() {
        let mut c = Config::default();
        c.plan.seeds = vec![1];
        let ids = |sel: &[&str]| -> Vec<String> {
            select(&c, &sel.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap().into_iter().map(|r| r.run_id).collect()
        };
        assert_eq!(ids(&["soft-T5"]), vec!["teacher", "soft-T5-s1"]);
        assert_eq!(ids(&["soft"]).len(), 6, "soft must not pick soft-lookalikes");
        assert_eq!(ids(&["baseline,gt_soft-T50-s1"]), vec!["teacher", "baseline-s1", "gt_soft-T50-s1"]);
        assert_eq!(ids(&["teacher"]), vec!["teacher"]);
        assert!(select(&c, &["nothing".to_string()]).is_err());
    }
}
