//! The CSV files of a results directory: `results.csv` (a row per run) and
//! `runs/<run_id>.csv` (a run's epochs).

use super::stats::group_of;
use super::store::Results;
use crate::protocol::{Diagnostics, RunResult};

/// results.csv: a row per run, with its cell's mean and spread over seeds.
pub fn results_csv(results: &Results) -> Result<String, csv::Error> {
    let groups = results.groups();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(
        [
            "run_id",
            "kind",
            "loss",
            "temperature",
            "seed",
            "status",
            "epochs",
            "final_test_accuracy",
            "final_train_loss",
            "model_bytes",
            "wall_seconds",
            "group_seeds",
            "group_mean_final_test_accuracy",
            "group_std_final_test_accuracy",
        ]
        .into_iter()
        .chain(DIAGNOSTIC_COLUMNS),
    )?;
    for r in &results.runs {
        let g = group_of(&groups, r);
        w.write_record(
            [
                r.run_id.clone(),
                format!("{:?}", r.kind).to_lowercase(),
                r.loss.name().to_string(),
                r.temperature.map(|t| t.to_string()).unwrap_or_default(),
                r.seed.to_string(),
                format!("{:?}", r.status).to_lowercase(),
                r.epochs.to_string(),
                format!("{:.6}", r.final_test_accuracy),
                format!("{:.6}", r.final_train_loss),
                r.model_bytes.to_string(),
                format!("{:.2}", r.wall_seconds),
                g.as_ref().map(|g| g.seeds.to_string()).unwrap_or_default(),
                g.as_ref().map(|g| format!("{:.6}", g.mean_final)).unwrap_or_default(),
                g.as_ref().map(|g| format!("{:.6}", g.std_final)).unwrap_or_default(),
            ]
            .into_iter()
            .chain(diagnostic_fields(r.diagnostics())),
        )?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("csv of utf-8 fields"))
}

/// runs/<run_id>.csv: one run's metrics per epoch.
pub fn run_csv(r: &RunResult) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(
        ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "images_per_sec"]
            .into_iter()
            .chain(DIAGNOSTIC_COLUMNS),
    )?;
    for m in &r.history {
        w.write_record(
            [
                m.epoch.to_string(),
                format!("{:.6}", m.train_loss),
                format!("{:.6}", m.train_accuracy),
                format!("{:.6}", m.test_loss),
                format!("{:.6}", m.test_accuracy),
                format!("{:.3}", m.seconds),
                format!("{:.1}", m.images_per_sec),
            ]
            .into_iter()
            .chain(diagnostic_fields(m.diagnostics.as_ref())),
        )?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("csv of utf-8 fields"))
}

const DIAGNOSTIC_COLUMNS: [&str; 5] = ["agreement", "agreement_on_teacher_errors", "kl_t1", "kl_t", "ece"];

/// agreement, agreement on the teacher's errors, KL at 1 and at T, ECE: empty
/// where they do not apply (the teacher's agreement) or were not measured.
fn diagnostic_fields(d: Option<&Diagnostics>) -> [String; 5] {
    let f = |x: Option<f64>| x.map(|x| format!("{x:.6}")).unwrap_or_default();
    match d {
        Some(d) => [f(d.agreement), f(d.agreement_on_teacher_errors), f(d.kl_t1), f(d.kl_t), f(Some(d.ece))],
        None => Default::default(),
    }
}
