//! The study session that `kdtui` and `kdtui --batch` start: what the
//! command line and the config decide (`Session::prepare`, testable without
//! running anything), then the data, the results directory, the training
//! thread and one of the two consumers (the monitor or the headless writer).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use super::args::Cli;
use super::failure::{failed, stopping, usage, Failure};
use crate::engine::backend::{self, DeviceChoice, Resolved};
use crate::engine::data;
use crate::engine::train::checkpoint::RunStore;
use crate::engine::train::{Hooks, PlanInput};
use crate::monitor::{headless, screen as monitor};
use crate::outputs::directory::{self, MODELS_DIR};
use crate::outputs::{publish, Results, Sink};
use crate::protocol::source::quiet_trainer_panics;
use crate::study::plan::{self, Shard};
use crate::study::{Config, RunKind, RunSpec};
use crate::util::{atomic_file, signals};

/// What a session will do, decided from the command line and the config
/// before anything is loaded or written.
#[derive(Debug)]
pub struct Session {
    pub config: Config,
    pub config_path: PathBuf,
    /// The runs this session trains (or finds finished), teacher first.
    pub runs: Vec<RunSpec>,
    /// Every run of the study, whatever this session selects.
    pub planned: Vec<RunSpec>,
    pub out: PathBuf,
    pub device: Resolved,
    pub batch: bool,
    pub fresh: bool,
    pub shard: Option<Shard>,
    /// Lines for the log before training starts.
    pub notes: Vec<String>,
}

impl Session {
    /// Reads the config, selects the runs (`--only`, `--shard`) and resolves
    /// the device; a usage or config error is exit status 2.
    pub fn prepare(cli: &Cli) -> Result<Self, Failure> {
        let config = Config::load(&cli.config).map_err(usage)?;
        let choice: DeviceChoice = cli.device.parse().map_err(usage)?;
        let selectors = if cli.only.is_empty() { config.plan.only.clone() } else { cli.only.clone() };
        let mut runs = plan::select(&config, &selectors).map_err(usage)?;
        let planned = plan::full_plan(&config);
        let mut notes = vec![];
        if let Some(shard) = cli.shard {
            let members = plan::shard_members(&config, shard);
            runs.retain(|r| r.kind == RunKind::Teacher || members.contains(&r.run_id));
            let students = planned.len() - 1;
            notes.push(if members.is_empty() {
                format!("shard {shard}: no runs (the plan has {students} student runs)")
            } else {
                format!("shard {shard}: {} of the plan's {students} student runs: {}", members.len(), members.join(", "))
            });
        }
        if !cli.batch {
            // Before loading data or starting anything: a pipe gets one clear line.
            monitor::check_terminal().map_err(usage)?;
        }
        if choice != DeviceChoice::Cpu {
            notes.extend(backend::keep_kernel_caches_in(&config.plan.checkpoints));
        }
        let (device, why) = backend::resolve_saying_why(choice).map_err(usage)?;
        notes.extend(why);
        Ok(Session {
            out: cli.out.clone().unwrap_or_else(|| config.plan.out.clone()),
            config_path: cli.config.clone(),
            config,
            runs,
            planned,
            device,
            batch: cli.batch,
            fresh: cli.fresh,
            shard: cli.shard,
            notes,
        })
    }
}

/// `kdtui [--batch]`: the whole session, to its exit status.
pub fn study(cli: Cli) -> Result<(), Failure> {
    let session = Session::prepare(&cli)?;
    let data = data::load(&session.config.data).map_err(failed)?;
    if session.fresh && !session.batch && !confirm_fresh(&session.config, &data.digest, &session.runs, &session.out).map_err(failed)? {
        println!("nothing removed; run without --fresh to continue where the last session stopped");
        return Ok(());
    }
    let config = &session.config;
    let checkpoints = config.plan.checkpoints.join(&config.plan.name);
    atomic_file::check_writable(&checkpoints)
        .map_err(|e| failed(anyhow!("checkpoint directory {} is not writable: {}", e.path.display(), e.source)))?;
    let study_hash = config.study_hash(&data.digest);
    let out = &session.out;
    let opened = directory::open(out, &study_hash, session.fresh).map_err(failed)?;
    let (runs_before, failures_before) = opened.previous.map(|p| (p.runs, p.failures)).unwrap_or_default();
    let mut results = Results {
        plan: config.plan.name.clone(),
        data: data.description.clone(),
        test_images: data.test.len(),
        device: session.device.describe(),
        config: std::fs::read_to_string(&session.config_path).unwrap_or_else(|_| config.to_toml()),
        study_hash,
        planned: session.planned.clone(),
        runs: runs_before,
        failures: failures_before,
        ..Results::default()
    };
    // At once, before any run: the directory then says which study it holds
    // (results.json's study hash), so what a session killed before its first
    // finished run leaves (TensorBoard files, say) is continued, not set aside.
    publish(&mut results, out).map_err(failed)?;
    let stop = signals::install().map_err(|e| failed(anyhow!("cannot install signal handlers: {e}")))?;
    let input = PlanInput {
        config: session.config.clone(),
        runs: session.runs.clone(),
        data,
        device_name: String::new(),
        fresh: session.fresh,
        notes: opened.note.into_iter().chain(session.notes.iter().cloned()).collect(),
        models: Some(out.join(MODELS_DIR)),
        train_teacher: session.shard.is_none(),
        hooks: Hooks::default(),
    };
    quiet_trainer_panics();
    let trainer = backend::spawn(session.device, input).map_err(failed)?;
    let sink = Sink::new(out, session.config.watch.clone());
    let results = if session.batch {
        headless::run(trainer, sink, results, Some(stop))
            .with_context(|| format!("plan in {}", session.config_path.display()))
            .map_err(failed)?
    } else {
        let results = monitor::run(trainer, sink, results, Some(stopping(stop))).map_err(failed)?;
        println!("{} runs recorded; results in {} (report.md, figures/, models/, tensorboard/)", results.runs.len(), out.display());
        results
    };
    if results.stopped {
        println!("stopped before the plan finished; run the same command again to continue it");
    }
    Ok(())
}

/// `--fresh` in the interactive session: says what would be removed and asks.
/// True to go on (also when there is nothing to remove).
fn confirm_fresh(config: &Config, data_digest: &str, runs: &[RunSpec], out: &Path) -> std::io::Result<bool> {
    let stored = runs.iter().filter(|spec| RunStore::new(config, data_digest, spec).dir.exists()).count();
    let has_results = out.join(directory::RESULTS_JSON).exists();
    if stored == 0 && !has_results {
        return Ok(true);
    }
    let mut what = vec![];
    if stored > 0 {
        what.push(format!("remove the checkpoints of {stored} run(s) in {}", config.plan.checkpoints.join(&config.plan.name).display()));
    }
    if has_results {
        what.push(format!("move the results in {} aside", out.display()));
    }
    eprint!("kdtui: --fresh will {}. Start over? [y/N] ", what.join(" and "));
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn prepare(dir: &Path, config: &str, args: &[&str]) -> Result<Session, Failure> {
        std::fs::write(dir.join("c.toml"), config).unwrap();
        let path = dir.join("c.toml");
        let mut argv = vec!["kdtui", "--batch", "--device", "cpu", "--config", path.to_str().unwrap()];
        argv.extend_from_slice(args);
        Session::prepare(&Cli::parse_from(argv))
    }

    #[test]
    fn a_shard_keeps_the_teacher_and_its_own_runs_and_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let s = prepare(dir.path(), "[plan]\nseeds = [1]\ntemperatures = [5.0, 15.0]\n", &["--shard", "1/3"]).unwrap();
        let ids: Vec<&str> = s.runs.iter().map(|r| r.run_id.as_str()).collect();
        // Students in plan order: baseline, soft-T5, soft-T15, hard_soft-T5, ...: k mod 3 == 1.
        assert_eq!(ids, ["teacher", "soft-T5-s1", "hard_soft-T15-s1"]);
        assert_eq!(s.planned.len(), 8);
        assert_eq!(s.notes, ["shard 1/3: 2 of the plan's 7 student runs: soft-T5-s1, hard_soft-T15-s1"]);
        assert_eq!(s.out, PathBuf::from("results"));
        assert_eq!(s.device, Resolved::Cpu);
    }

    #[test]
    fn only_on_the_command_line_wins_over_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let s = prepare(dir.path(), "[plan]\nseeds = [1]\nonly = [\"soft\"]\n", &["--only", "baseline", "--out", "elsewhere"]).unwrap();
        let ids: Vec<&str> = s.runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["teacher", "baseline-s1"]);
        assert_eq!(s.out, PathBuf::from("elsewhere"));
    }

    #[test]
    fn usage_errors_are_exit_status_2() {
        let dir = tempfile::tempdir().unwrap();
        for (config, args) in [("[student]\nw_bits = 9\n", &[][..]), ("", &["--only", "nothing"][..])] {
            let f = prepare(dir.path(), config, args).unwrap_err();
            assert_eq!(f.code, 2, "{}", f.error);
        }
    }
}
