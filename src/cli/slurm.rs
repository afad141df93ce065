//! `kdtui slurm`: sbatch scripts that run a study on a Slurm cluster. Slurm
//! schedules; kdtui only splits the plan (`--shard`, `study::plan`):
//!
//! - `teacher.sbatch`: one job, `kdtui --batch --only teacher`: trains the
//!   teacher and caches its logits;
//! - `students.sbatch`: a job array, task I of N running `kdtui --batch
//!   --shard I/N`, submitted with `--dependency=afterok:<teacher job>`;
//! - `submit.sh`: submits the two in that order.
//!
//! Every task writes into the one results directory (merged under its lock,
//! `outputs::store`) and the checkpoints of its own runs; a requeued task resumes
//! them like any session. Paths are written absolute: the jobs run where
//! the scripts were made, on a file system the nodes share.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::args::SlurmArgs;
use super::failure::{failed, usage, Failure};
use crate::study::{plan, Config};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    Cpu,
    /// One GPU per job (`--gres=gpu:1`); inside a job it is always `cuda:0`.
    Gpu,
}

/// What the scripts need, all paths absolute.
#[derive(Debug, Clone)]
pub struct Request {
    pub kdtui: PathBuf,
    pub workdir: PathBuf,
    pub config: PathBuf,
    pub out: PathBuf,
    pub dir: PathBuf,
    pub plan: String,
    pub device: Accelerator,
    pub array_size: usize,
    /// Options for both jobs, one `#SBATCH` line each (`--partition=gpu`, `--time=4:00:00`).
    pub sbatch: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("--device {0:?}: a Slurm study runs on `cpu` or `cuda` (one GPU per job, requested with --gres=gpu:1)")]
    Device(String),
    #[error("--array-size must be at least 1")]
    NoTasks,
    #[error("--array-size {asked} is more than the plan's {runs} student runs; some tasks would have nothing to do")]
    TooManyTasks { asked: usize, runs: usize },
    #[error("the plan has no student runs (only the teacher): run `kdtui --batch --only teacher` as one job instead")]
    NoStudents,
    #[error("sbatch option {0:?}: kdtui sets it itself (use --array-size; the dependency is in submit.sh)")]
    Reserved(String),
    #[error("sbatch option {0:?} must start with `-` (e.g. --partition=gpu)")]
    NotAnOption(String),
    #[error("{0}: paths with spaces or quotes cannot go into #SBATCH lines; use a path without them")]
    Path(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl std::str::FromStr for Accelerator {
    type Err = SlurmError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Accelerator::Cpu),
            "cuda" | "cuda:0" | "gpu" => Ok(Accelerator::Gpu),
            other => Err(SlurmError::Device(other.to_string())),
        }
    }
}

/// Checks what the user gave before anything is written.
pub fn check(request: &Request, student_runs: usize) -> Result<(), SlurmError> {
    if student_runs == 0 {
        return Err(SlurmError::NoStudents);
    }
    if request.array_size == 0 {
        return Err(SlurmError::NoTasks);
    }
    if request.array_size > student_runs {
        return Err(SlurmError::TooManyTasks { asked: request.array_size, runs: student_runs });
    }
    for option in &request.sbatch {
        if !option.starts_with('-') {
            return Err(SlurmError::NotAnOption(option.clone()));
        }
        let name = option.split(['=', ' ']).next().unwrap_or_default();
        if matches!(name, "--array" | "-a" | "--dependency" | "-d") {
            return Err(SlurmError::Reserved(option.clone()));
        }
    }
    for path in [&request.kdtui, &request.workdir, &request.config, &request.out, &request.dir] {
        if path.to_string_lossy().contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            return Err(SlurmError::Path(path.clone()));
        }
    }
    Ok(())
}

/// A job's name: Slurm shows it in squeue; the plan's name, made safe.
fn job_name(plan: &str, part: &str) -> String {
    let plan: String = plan.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    format!("kdtui-{plan}-{part}")
}

fn header(request: &Request, part: &str, what: &str, output: &str) -> String {
    let mut s = format!(
        "#!/bin/bash\n\
         # kdtui study \"{plan}\" on Slurm: {what}. Written by `kdtui slurm`;\n\
         # submit both jobs with: sh {submit}\n\
         #SBATCH --job-name={name}\n\
         #SBATCH --chdir={workdir}\n\
         #SBATCH --output={logs}/{output}\n\
         #SBATCH --open-mode=append\n\
         #SBATCH --requeue\n\
         #SBATCH --ntasks=1\n",
        plan = request.plan,
        submit = request.dir.join("submit.sh").display(),
        name = job_name(&request.plan, part),
        workdir = request.workdir.display(),
        logs = request.dir.join("logs").display(),
    );
    if request.device == Accelerator::Gpu {
        s.push_str("#SBATCH --gres=gpu:1\n");
    }
    for option in &request.sbatch {
        s.push_str(&format!("#SBATCH {option}\n"));
    }
    s.push_str(
        "set -eu\n\
         # kdtui's CPU backend takes one thread per CPU it may use; in a job, the job's.\n\
         if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then export RAYON_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"; fi\n\
         # exec: Slurm's SIGTERM (scancel, preemption, requeue, time limit) reaches kdtui,\n\
         # which saves the run under way; the requeued task resumes it.\n",
    );
    s
}

fn command(request: &Request) -> String {
    format!(
        "exec {} --batch --config {} --out {} --device {}",
        request.kdtui.display(),
        request.config.display(),
        request.out.display(),
        match request.device {
            Accelerator::Cpu => "cpu",
            Accelerator::Gpu => "cuda",
        }
    )
}

pub fn teacher_script(request: &Request) -> String {
    format!(
        "{}{} --only teacher\n",
        header(request, "teacher", "the teacher job (its logits are cached for the students)", "%x-%j.out"),
        command(request)
    )
}

pub fn students_script(request: &Request) -> String {
    let mut s = header(
        request,
        "students",
        &format!("the students, a job array of {} tasks after the teacher", request.array_size),
        "%x-%A_%a.out",
    );
    // After the header's options: #SBATCH lines count only before the first command.
    let at = s.find("set -eu\n").expect("header ends with the script");
    s.insert_str(at, &format!("#SBATCH --array=0-{}\n", request.array_size - 1));
    s.push_str(&format!("{} --shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\"\n", command(request)));
    s
}

pub fn submit_script(request: &Request) -> String {
    let teacher = request.dir.join("teacher.sbatch");
    let students = request.dir.join("students.sbatch");
    format!(
        "#!/bin/sh\n\
         # Submits the kdtui study \"{plan}\": the teacher job, then the students' array,\n\
         # which starts once the teacher job has succeeded (afterok). Written by `kdtui slurm`.\n\
         set -eu\n\
         teacher=$(sbatch --parsable {teacher})\n\
         teacher=${{teacher%%;*}}\n\
         students=$(sbatch --parsable --dependency=afterok:\"$teacher\" {students})\n\
         students=${{students%%;*}}\n\
         echo \"submitted: teacher job $teacher; students job array $students ({n} tasks, after the teacher)\"\n\
         echo \"follow it: {kdtui} watch {out}    (squeue --me; logs in {logs})\"\n",
        plan = request.plan,
        teacher = teacher.display(),
        students = students.display(),
        n = request.array_size,
        kdtui = request.kdtui.display(),
        out = request.out.display(),
        logs = request.dir.join("logs").display(),
    )
}

/// Writes the three scripts (executable) and the logs folder; returns the paths.
pub fn write(request: &Request) -> Result<Vec<PathBuf>, SlurmError> {
    use std::os::unix::fs::PermissionsExt;
    let mkdir = |path: &Path| std::fs::create_dir_all(path).map_err(|source| SlurmError::Write { path: path.to_path_buf(), source });
    mkdir(&request.dir.join("logs"))?;
    // `kdtui watch` on it waits for the study instead of refusing a missing directory.
    mkdir(&request.out)?;
    let files =
        [("teacher.sbatch", teacher_script(request)), ("students.sbatch", students_script(request)), ("submit.sh", submit_script(request))];
    let mut written = vec![];
    for (name, text) in files {
        let path = request.dir.join(name);
        crate::util::atomic_file::write(&path, text.as_bytes()).map_err(|e| SlurmError::Write { path: e.path, source: e.source })?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|source| SlurmError::Write { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

/// `kdtui slurm`: writes the scripts and says how to submit and follow them.
pub fn run(args: SlurmArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(usage)?;
    let device: Accelerator = args.device.parse().map_err(usage)?;
    let students = plan::full_plan(&config).len() - 1;
    let cwd = std::env::current_dir().map_err(|e| failed(anyhow!("current directory: {e}")))?;
    let absolute = |p: &std::path::Path| if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    let kdtui = std::env::current_exe().map_err(|e| failed(anyhow!("cannot find this program's path: {e}")))?;
    let request = Request {
        kdtui,
        workdir: cwd.clone(),
        config: absolute(&args.config),
        out: absolute(&args.out.unwrap_or_else(|| config.plan.out.clone())),
        dir: absolute(&args.dir),
        plan: config.plan.name.clone(),
        device,
        array_size: args.array_size.unwrap_or(students),
        sbatch: args.sbatch,
    };
    check(&request, students).map_err(usage)?;
    let written = write(&request).map_err(failed)?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    println!(
        "plan {}: the teacher job, then {} array tasks for {students} student runs (run k goes to task k mod {}), device {}",
        config.plan.name, request.array_size, request.array_size, args.device
    );
    println!("submit: sh {}", request.dir.join("submit.sh").display());
    println!("follow: kdtui watch {}", request.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            kdtui: "/home/a/kdtui/target/release/kdtui".into(),
            workdir: "/home/a/kdtui".into(),
            config: "/home/a/kdtui/config.toml".into(),
            out: "/home/a/kdtui/results".into(),
            dir: "/home/a/kdtui/slurm".into(),
            plan: "study".into(),
            device: Accelerator::Gpu,
            array_size: 4,
            sbatch: vec!["--partition=gpu".into(), "--time=2:00:00".into()],
        }
    }

    #[test]
    fn the_array_runs_one_shard_per_task_after_the_teacher() {
        let r = request();
        let students = students_script(&r);
        assert!(students.contains("#SBATCH --array=0-3\n"));
        assert!(students.contains("--shard \"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\""));
        assert!(students.contains("#SBATCH --gres=gpu:1\n") && students.contains("--device cuda"));
        assert!(students.contains("#SBATCH --partition=gpu\n#SBATCH --time=2:00:00\n"));
        // Slurm reads #SBATCH lines only above the first command.
        let last_option = students.rfind("#SBATCH").unwrap();
        assert!(last_option < students.find("set -eu").unwrap());
        let teacher = teacher_script(&r);
        assert!(teacher.contains("--only teacher") && !teacher.contains("--array"));
        let submit = submit_script(&r);
        assert!(submit.contains("--dependency=afterok:\"$teacher\" /home/a/kdtui/slurm/students.sbatch"));
        let cpu = Request { device: Accelerator::Cpu, ..r };
        assert!(!students_script(&cpu).contains("gres") && students_script(&cpu).contains("--device cpu"));
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let r = request();
        assert!(check(&r, 16).is_ok());
        assert!(matches!(check(&r, 3), Err(SlurmError::TooManyTasks { asked: 4, runs: 3 })));
        assert!(matches!(check(&r, 0), Err(SlurmError::NoStudents)));
        let with = |option: &str| Request { sbatch: vec![option.into()], ..request() };
        assert!(matches!(check(&with("--array=0-9"), 16), Err(SlurmError::Reserved(_))));
        assert!(matches!(check(&with("-d afterany:3"), 16), Err(SlurmError::Reserved(_))));
        assert!(matches!(check(&with("partition=gpu"), 16), Err(SlurmError::NotAnOption(_))));
        let spaced = Request { out: "/home/a/my results".into(), ..request() };
        assert!(matches!(check(&spaced, 16), Err(SlurmError::Path(_))));
        assert!("rocm".parse::<Accelerator>().is_err());
    }
}
