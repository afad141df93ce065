//! `kdtui data fetch` (download a data set, with a progress bar on a
//! terminal and one line per file otherwise) and `kdtui data check` (what a
//! data directory holds and what a config would train on).

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressStyle};

use super::args::{DataCheckArgs, DataCommand, DataFetchArgs, DataSet};
use super::failure::{failed, usage, Failure};
use crate::engine::data::fetch::{self, FetchError, Fetched, Progress};
use crate::engine::data::{self, idx, svhn_mat};
use crate::study::config::DataSource;
use crate::study::Config;
use crate::util::format::megabytes;
use crate::util::signals;

/// The exit status of a fetch stopped by a signal: its partial file is kept
/// for the next run, but the data is not there yet (128 + SIGINT).
const STOPPED: u8 = 130;

pub fn run(command: DataCommand) -> Result<(), Failure> {
    match command {
        DataCommand::Fetch(args) => fetch(args),
        DataCommand::Check(args) => check(args),
    }
}

/// The config a data command reads: the one named, or `config.toml` when
/// it exists, else the defaults (a fetch needs no config).
fn config(named: Option<&Path>) -> Result<(Config, String), Failure> {
    match named {
        Some(path) => Ok((Config::load(path).map_err(usage)?, path.display().to_string())),
        None if Path::new("config.toml").exists() => Ok((Config::load(Path::new("config.toml")).map_err(usage)?, "config.toml".into())),
        None => Ok((Config::default(), "the default config".into())),
    }
}

fn fetch(args: DataFetchArgs) -> Result<(), Failure> {
    // With --dir alone no config is needed: a broken config.toml beside it
    // does not stop a download.
    let config = match (&args.dir, &args.config) {
        (Some(_), None) => Config::default(),
        _ => config(args.config.as_deref())?.0,
    };
    let dir = args.dir.clone().unwrap_or_else(|| config.data.dir.clone());
    if let Some(url) = &args.url {
        fetch::check_base(url).map_err(usage)?;
    }
    // A config that trains on the extra set needs it fetched too.
    let extra = args.extra || (args.set == DataSet::Svhn && config.data.use_extra);
    let mut remotes = match args.set {
        DataSet::Svhn => fetch::svhn(args.url.as_deref().unwrap_or(fetch::SVHN_URL), extra),
        DataSet::Idx => {
            if args.extra {
                return Err(usage(anyhow!("--extra is for svhn only")));
            }
            let url = args.url.as_deref().ok_or_else(|| {
                usage(anyhow!("kdtui data fetch idx needs --url BASE: the address that holds the four MNIST-format files"))
            })?;
            fetch::idx(url)
        }
    };
    fetch::override_sums(&mut remotes, &args.md5).map_err(usage)?;
    std::fs::create_dir_all(&dir).map_err(|e| failed(anyhow!("cannot create the data directory {}: {e}", dir.display())))?;
    let stop = signals::install().map_err(|e| failed(anyhow!("cannot install signal handlers: {e}")))?;
    let agent = fetch::agent();
    if let Some(proxy) = remotes.first().and_then(|r| fetch::proxy_for(&agent, &r.url)) {
        println!("through the proxy {proxy}");
    }
    let mut progress = Bar::new(std::io::stderr().is_terminal());
    for remote in &remotes {
        let started = Instant::now();
        let outcome = fetch::fetch(&agent, remote, &dir, &|| stop.requested(), &mut progress).map_err(|e| {
            let code = if matches!(e, FetchError::Interrupted { .. }) { STOPPED } else { 1 };
            Failure { code, error: e.into() }
        })?;
        let checked = match &remote.check {
            fetch::Check::Md5(sum) => format!("MD5 {sum} checked"),
            fetch::Check::Idx { .. } => "a whole IDX file (no checksum known: --md5 NAME=SUM checks one)".into(),
        };
        match outcome {
            Fetched::Present => println!("{}: already there, {checked}", dir.join(&remote.name).display()),
            Fetched::Downloaded { bytes, resumed_from } => {
                let seconds = started.elapsed().as_secs_f64().max(1e-3);
                let new = bytes - resumed_from;
                let rate = megabytes((new as f64 / seconds) as u64);
                let how = if resumed_from > 0 {
                    format!(
                        "{}, {} of it in {seconds:.1} s ({rate}/s) after resuming at byte {resumed_from}",
                        megabytes(bytes),
                        megabytes(new)
                    )
                } else {
                    format!("{} in {seconds:.1} s ({rate}/s)", megabytes(bytes))
                };
                println!("{}: {how}, {checked}", dir.join(&remote.name).display());
            }
        }
    }
    if let DataSet::Idx = args.set {
        // Each file is whole; now the pairs must agree (as many labels as
        // images, labels 0..9, one image size).
        for prefix in ["train", "t10k"] {
            let split = idx::load_pair(&dir, prefix)
                .map_err(|e| failed(anyhow!("{e}; the files do not make a set: remove the four and fetch again, or --url another")))?;
            println!("{prefix}: {} images of {}x{} ({})", split.data.len(), split.size.0, split.size.1, split.images_path.display());
        }
    }
    println!("{} holds the {} files; `kdtui data check --config FILE` says what a config trains on", dir.display(), remotes.len());
    if extra && !config.data.use_extra {
        println!("a config trains on extra_32x32.mat too with `use_extra = true` in its [data]");
    }
    Ok(())
}

fn check(args: DataCheckArgs) -> Result<(), Failure> {
    let (config, named) = config(args.config.as_deref())?;
    let mut data_config = config.data.clone();
    if let Some(dir) = &args.dir {
        data_config.dir = dir.clone();
    }
    let dir = &data_config.dir;
    let files: Vec<(String, &str)> = match data_config.source {
        DataSource::Synthetic => vec![],
        DataSource::Svhn => svhn_mat::OFFICIAL_MD5
            .iter()
            .map(|(name, _)| {
                (name.to_string(), if *name == svhn_mat::EXTRA && !data_config.use_extra { "not used: use_extra = false" } else { "" })
            })
            .collect(),
        DataSource::Idx => idx::FILES
            .iter()
            .map(|(stem, _)| (idx::find(dir, stem).file_name().unwrap_or_default().to_string_lossy().into_owned(), ""))
            .collect(),
    };
    if files.is_empty() {
        println!("{named} trains on synthetic data, generated: it reads no files (--config configs/svhn.toml checks SVHN's)");
    } else {
        println!("{} ([data] dir of {named}):", dir.display());
    }
    for (name, note) in &files {
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            Ok(meta) => println!("  {name}: {} bytes", meta.len()),
            Err(_) if !note.is_empty() => println!("  {name}: missing ({note})"),
            Err(_) => println!("  {name}: missing"),
        }
    }
    // Its errors name the file and, for a missing one, the fetch command.
    let loaded = data::load(&data_config).map_err(failed)?;
    for note in &loaded.notes {
        println!("  {note}");
    }
    println!("{named} trains on {}", loaded.description);
    Ok(())
}

/// The progress of one download at a time: an indicatif bar (bytes, rate,
/// time left) on a terminal, nothing otherwise (each file ends with a line).
struct Bar {
    terminal: bool,
    bar: Option<ProgressBar>,
}

impl Bar {
    fn new(terminal: bool) -> Self {
        Bar { terminal, bar: None }
    }
}

impl Progress for Bar {
    fn start(&mut self, name: &str, from: u64, total: Option<u64>) {
        if !self.terminal {
            return;
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left")
                    .expect("a valid template")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner()
                .with_style(ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}").expect("a valid template")),
        };
        bar.set_message(name.to_string());
        bar.set_position(from);
        bar.reset_eta();
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn say(&mut self, line: &str) {
        match &self.bar {
            // Above the bar, which is drawn again below it.
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }
}
