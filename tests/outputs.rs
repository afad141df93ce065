//! What a study leaves behind: report and figures, TensorBoard files, model
//! files, and the commands that rebuild, export and evaluate them.

use std::path::Path;

use assert_cmd::Command;

use kdtui::engine::export;
use kdtui::outputs::{tensorboard, Results};
use kdtui::protocol::EpochMetrics;
use kdtui::study::{Config, RunKind};

mod common;
use common::{write, TINY};

fn kdtui(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kdtui").unwrap();
    cmd.current_dir(dir);
    cmd
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// (width, height, share of pixels that are not white) of a PNG.
fn png_facts(path: &Path) -> (u32, u32, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let pixels = &buf[..info.buffer_size()];
    let inked = pixels.chunks_exact(3).filter(|p| p.iter().any(|&c| c < 250)).count();
    (info.width, info.height, inked as f64 / (pixels.len() / 3) as f64)
}

const TWO_SEEDS: &str = "seeds = [1, 2]";

#[test]
fn a_batch_plan_leaves_a_report_figures_tensorboard_files_and_model_files_that_agree() {
    let dir = tempfile::tempdir().unwrap();
    let config_text = TINY.replacen("seeds = [1]", TWO_SEEDS, 1);
    write(dir.path(), "config.toml", &config_text);
    run_ok(kdtui(dir.path()).args(["--batch", "--device", "cpu"]));
    let out = dir.path().join("results");
    let results = Results::load(&out).expect("results.json");
    assert_eq!(results.runs.len(), 7);

    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let bytes_column = csv.lines().next().unwrap().split(',').position(|c| c == "model_bytes").expect("a model_bytes column");
    for r in &results.runs {
        // The model file is the size the table reports.
        let model = out.join("models").join(format!("{}.safetensors", r.run_id));
        assert_eq!(std::fs::metadata(&model).unwrap().len(), r.model_bytes, "{}", r.run_id);
        let row = csv.lines().find(|l| l.starts_with(&format!("{},", r.run_id))).unwrap();
        assert_eq!(row.split(',').nth(bytes_column).unwrap(), r.model_bytes.to_string());

        // The run's figure: three panels and its reliability diagram, drawn on.
        let (w, h, inked) = png_facts(&out.join("figures").join(format!("{}.png", r.run_id)));
        assert_eq!((w, h), (1600, 380));
        assert!(inked > 0.02, "{}: {inked}", r.run_id);

        // Its TensorBoard file holds the epochs of its history, and step losses.
        let tb_dir = out.join("tensorboard").join(&r.run_id);
        let files: Vec<_> = std::fs::read_dir(&tb_dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
        let scalars = tensorboard::read_scalars(&files[0]).unwrap();
        let series = |tag: &str| -> Vec<(i64, f32)> { scalars.iter().filter(|s| s.tag == tag).map(|s| (s.step, s.value)).collect() };
        let want = |f: fn(&EpochMetrics) -> f64| -> Vec<(i64, f32)> { r.history.iter().map(|m| (m.epoch as i64, f(m) as f32)).collect() };
        assert_eq!(series("accuracy/test"), want(|m| m.test_accuracy), "{}", r.run_id);
        assert_eq!(series("accuracy/train"), want(|m| m.train_accuracy));
        assert_eq!(series("loss/test"), want(|m| m.test_loss));
        assert_eq!(series("loss/train"), want(|m| m.train_loss));
        // The diagnostics: every run's calibration, the students' fidelity.
        let diagnosed = |f: fn(&kdtui::protocol::Diagnostics) -> Option<f64>| -> Vec<(i64, f32)> {
            r.history.iter().filter_map(|m| Some((m.epoch as i64, f(m.diagnostics.as_ref()?)? as f32))).collect()
        };
        assert_eq!(series("calibration/ece"), diagnosed(|d| Some(d.ece)));
        assert_eq!(series("calibration/ece").len(), r.epochs, "{}", r.run_id);
        assert_eq!(series("fidelity/agreement"), diagnosed(|d| d.agreement));
        assert_eq!(series("fidelity/kl_t1"), diagnosed(|d| d.kl_t1));
        assert_eq!(series("fidelity/kl_T"), diagnosed(|d| d.kl_t));
        let students = if r.kind == RunKind::Teacher { 0 } else { r.epochs };
        assert_eq!(series("fidelity/agreement").len(), students, "{}", r.run_id);
        let distilled = if r.kind == RunKind::Distill { r.epochs } else { 0 };
        assert_eq!(series("fidelity/kl_T").len(), distilled, "{}", r.run_id);
        let steps: Vec<i64> = series("step/loss").iter().map(|s| s.0).collect();
        // 192 images in batches of 32, an event every 5 steps: steps 5 (and 10 for the teacher).
        let per_epoch = 192 / 32;
        let expected: Vec<i64> = (1..=(r.epochs * per_epoch) as i64).filter(|s| s % 5 == 0).collect();
        assert_eq!(steps, expected, "{}", r.run_id);
    }

    let (w, h, inked) = png_facts(&out.join("figures/sweep.png"));
    assert_eq!((w, h), (1300, 620));
    assert!(inked > 0.02);
    let (w, h, inked) = png_facts(&out.join("figures/agreement.png"));
    assert_eq!((w, h), (1100, 520));
    assert!(inked > 0.02);
    // Two seeds: the planned comparisons can be made, and their figure is drawn.
    let (w, h, inked) = png_facts(&out.join("figures/effects.png"));
    assert_eq!((w, h), (1300, 620));
    assert!(inked > 0.02);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "## Fidelity to the teacher and calibration",
        "| run | agreement | on teacher errors | KL at T=1 | KL at T | ECE | test acc |",
        "| soft T=5 | ",
        "![Agreement with the teacher against T](figures/agreement.png)",
        "![Test accuracy against T](figures/sweep.png)",
        "## Comparisons planned before the data",
        "family of 2 comparisons",
        "Made: all 2 planned comparisons.",
        "(figures/effects.png)",
        "![teacher](figures/teacher.png)",
        "| 5 | 93.36% / ",
        "95% CI",
        "- device and backend: cpu",
        "synthetic: 192 train / 64 test",
    ] {
        assert!(report.contains(needle), "report.md lacks {needle:?}:\n{report}");
    }
    assert!(report.contains(&config_text), "the config, verbatim");

    // `kdtui report` rebuilds the report and the figures from results.json alone.
    std::fs::remove_dir_all(out.join("figures")).unwrap();
    std::fs::remove_file(out.join("report.md")).unwrap();
    let said = run_ok(kdtui(dir.path()).args(["report", "results"]));
    assert!(said.contains("10 figures written"), "{said}");
    assert_eq!(std::fs::read_to_string(out.join("report.md")).unwrap(), report);
    assert!(out.join("figures/sweep.png").is_file() && out.join("figures/gt_soft-T5-s2.png").is_file());

    // `kdtui eval` of a model file gives the accuracy of the table, image for image.
    let config = Config::load(&dir.path().join("config.toml")).unwrap();
    let data = export::data_config(&config, None).unwrap();
    let ckpt = config.plan.checkpoints.join("tiny");
    for r in results.runs.iter().filter(|r| r.run_id == "teacher" || r.run_id == "soft-T5-s2") {
        let file = format!("results/models/{}.safetensors", r.run_id);
        let said = run_ok(kdtui(dir.path()).args(["eval", &file]));
        let correct = (r.final_test_accuracy * 64.0).round() as usize;
        if r.run_id == "teacher" {
            assert!(said.contains(&format!("({correct}/64 images)")), "{said}");
            // A float model runs on the float engine; the integer engine refuses it with the way out.
            assert!(said.contains("(float engine)"), "{said}");
            let out = kdtui(dir.path()).args(["eval", &file, "--engine", "int"]).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert!(stderr.contains("use --engine float") && stderr.lines().count() == 1, "{stderr}");
        } else {
            // A student runs on the integer engine by default, compared with the float one.
            assert!(said.contains("(integer engine, "), "{said}");
            // Exact on integers; the float engine's rounding may put one code across a threshold.
            let same: usize = said
                .split("integer vs float engine: same class on ")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no engine comparison: {said}"));
            assert!(same >= 63, "{said}");
            // Its accuracy is the table's, but for an image whose class the rounding moved.
            let line = said.lines().find(|l| l.starts_with("test accuracy")).unwrap();
            let int_correct: usize = line.split(" (").nth(1).and_then(|r| r.split('/').next()).and_then(|n| n.parse().ok()).unwrap();
            assert!(int_correct.abs_diff(correct) <= 64 - same, "{said}\nthe table: {correct}/64");
            let float = run_ok(kdtui(dir.path()).args(["eval", &file, "--engine", "float"]));
            assert!(float.contains(&format!("({correct}/64 images)")) && float.contains("(float engine)"), "{float}");
        }

        let packed =
            export::eval(&dir.path().join(&file), None, Some(export::Engine::Float), &config, Path::new("config.toml"), &data).unwrap();
        let store_dir = match r.kind {
            RunKind::Teacher => std::fs::read_dir(dir.path().join(&ckpt))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("teacher-"))
                .unwrap(),
            _ => dir.path().join(&ckpt).join(&r.run_id),
        };
        let trained =
            export::eval(&store_dir.join("checkpoint.bin"), None, Some(export::Engine::Float), &config, Path::new("config.toml"), &data)
                .unwrap();
        assert_eq!(packed.predictions, trained.predictions, "{}: the packed model predicts what the trained one did", r.run_id);
        assert_eq!(packed.correct, correct);
    }

    // `kdtui eval --teacher`: the agreement and ECE of the table's last epoch.
    let student = results.runs.iter().find(|r| r.run_id == "soft-T5-s2").unwrap();
    let said = run_ok(kdtui(dir.path()).args([
        "eval",
        "results/models/soft-T5-s2.safetensors",
        "--teacher",
        "results/models/teacher.safetensors",
    ]));
    let d = student.diagnostics().unwrap();
    assert!(said.contains(&format!("expected calibration error {:.4}", d.ece)), "{said}");
    let agreement =
        format!("agreement with the teacher (results/models/teacher.safetensors): {:.2}% of images", 100.0 * d.agreement.unwrap());
    assert!(said.contains(&agreement), "{said}\nwanted {agreement}");

    // `kdtui export` writes the same model again, of the reported size.
    let said = run_ok(kdtui(dir.path()).args(["export", "gt_soft-T5-s1", "-o", "gt.safetensors"]));
    let bytes = results.runs.iter().find(|r| r.run_id == "gt_soft-T5-s1").unwrap().model_bytes;
    assert!(said.contains(&format!("({bytes} bytes)")), "{said}");
    assert_eq!(std::fs::metadata(dir.path().join("gt.safetensors")).unwrap().len(), bytes);
    assert!(
        std::fs::read(dir.path().join("gt.safetensors")).unwrap() == std::fs::read(out.join("models/gt_soft-T5-s1.safetensors")).unwrap(),
        "the exported file differs from the one the plan wrote to results/models"
    );

    // `kdtui eval` of a checkpoint on other data (an SVHN-layout folder),
    // with a teacher: from the command line, the numbers the library gives.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/svhn-format");
    let student_ckpt = dir.path().join(&ckpt).join("soft-T5-s2/checkpoint.bin");
    let teacher_file = out.join("models/teacher.safetensors");
    let said = run_ok(kdtui(dir.path()).args([
        "eval",
        student_ckpt.to_str().unwrap(),
        "--data",
        fixture.to_str().unwrap(),
        "--teacher",
        teacher_file.to_str().unwrap(),
    ]));
    let svhn = export::data_config(&config, Some(fixture.to_str().unwrap())).unwrap();
    let want = export::eval(&student_ckpt, Some(&teacher_file), None, &config, Path::new("config.toml"), &svhn).unwrap();
    assert_eq!(want.images, 96, "the fixture's test set (EXPECTED.txt)");
    assert!(said.contains(&format!("({}/{} images)", want.correct, want.images)), "{said}");
    let agreement = 100.0 * want.diagnostics.agreement.unwrap();
    assert!(said.contains(&format!("{agreement:.2}% of images")), "{said}\nwanted {agreement:.2}%");
    assert!(said.contains(&want.data), "the data it says it used: {said}\nwanted {}", want.data);
}

#[test]
fn the_new_commands_refuse_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    let fails = |args: &[&str], code: i32, needles: &[&str]| {
        let out = kdtui(dir.path()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{args:?}: stderr lacks {n:?}: {stderr}");
        }
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("panicked"));
    };
    fails(&["export", "soft-T9-s1"], 2, &["no run `soft-T9-s1`", "soft-T5-s1"]);
    fails(&["export", "soft-T5-s1"], 1, &["has no checkpoint", "--only soft-T5-s1"]);
    fails(&["eval", "config.toml"], 1, &["neither a kdtui model file"]);
    fails(&["eval", "missing.safetensors"], 1, &["cannot read missing.safetensors"]);
    fails(&["eval", "config.toml", "--data", "nowhere"], 2, &["--data nowhere"]);
    fails(&["report", "results"], 2, &["results/results.json", "results directory"]);

    // A safetensors file that is not a kdtui model.
    let other = safetensors::serialize(Vec::<(String, safetensors::tensor::TensorView)>::new(), None).unwrap();
    std::fs::write(dir.path().join("other.safetensors"), other).unwrap();
    fails(&["eval", "other.safetensors"], 1, &["other.safetensors", "not a kdtui model file"]);
    // A kdtui results.json that is damaged.
    std::fs::create_dir_all(dir.path().join("results")).unwrap();
    std::fs::write(dir.path().join("results/results.json"), "{ torn").unwrap();
    fails(&["report", "results"], 1, &["not a kdtui results file"]);
}
