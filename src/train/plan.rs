//! The plan: the ordered list of runs a config asks for.
//!
//! Run ids: `teacher`, `baseline-s<seed>`, `<loss>-T<temperature>-s<seed>`.
//! A selector (from `--only` or `[plan] only`) picks a run when it equals the
//! run id or is a prefix of it ending at a `-`: `soft` picks every soft run,
//! `soft-T5` every seed of it, `baseline` every baseline. The teacher always
//! runs (or is loaded) first: every distillation run needs its targets.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::distill::Loss;

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
    let mut runs = vec![RunSpec {
        run_id: "teacher".into(),
        kind: RunKind::Teacher,
        loss: Loss::Hard,
        temperature: None,
        seed: seeds[0],
    }];
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

fn selects(selector: &str, run_id: &str) -> bool {
    run_id == selector || run_id.strip_prefix(selector).is_some_and(|rest| rest.starts_with('-'))
}

/// The runs to execute: all, or those the selectors pick plus the teacher.
pub fn select(config: &Config, selectors: &[String]) -> Result<Vec<RunSpec>, NoRunSelected> {
    let runs = full_plan(config);
    let selectors: Vec<String> = selectors
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if selectors.is_empty() {
        return Ok(runs);
    }
    let picked: Vec<RunSpec> = runs
        .iter()
        .filter(|r| r.kind == RunKind::Teacher || selectors.iter().any(|s| selects(s, &r.run_id)))
        .cloned()
        .collect();
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
        assert_eq!(runs.len(), 17);
        assert_eq!(runs[0].run_id, "teacher");
        assert_eq!(runs[1].run_id, "baseline-s1");
        assert_eq!(runs[2].run_id, "soft-T5-s1");
        assert_eq!(runs[16].run_id, "gt_soft-T100-s1");
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
    fn selectors_pick_by_id_or_prefix() {
        let c = Config::default();
        let ids = |sel: &[&str]| -> Vec<String> {
            select(&c, &sel.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .into_iter()
                .map(|r| r.run_id)
                .collect()
        };
        assert_eq!(ids(&["soft-T5"]), vec!["teacher", "soft-T5-s1"]);
        assert_eq!(ids(&["soft"]).len(), 6, "soft must not pick soft-lookalikes");
        assert_eq!(ids(&["baseline,gt_soft-T50-s1"]), vec!["teacher", "baseline-s1", "gt_soft-T50-s1"]);
        assert_eq!(ids(&["teacher"]), vec!["teacher"]);
        assert!(select(&c, &["nothing".to_string()]).is_err());
    }
}
