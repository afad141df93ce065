use super::*;

#[test]
fn default_config_round_trips() {
    let c = Config::default();
    let text = c.to_toml();
    let back = Config::parse(&text, Path::new("x.toml")).unwrap();
    assert_eq!(c, back);
}

#[test]
fn shipped_config_is_the_default() {
    let text = include_str!("../../../config.toml");
    let c = Config::parse(text, Path::new("config.toml")).unwrap();
    assert_eq!(c, Config::default());
}

#[test]
fn errors_name_the_key() {
    let e = Config::parse("[student]\nw_bits = 9\n", Path::new("c.toml")).unwrap_err();
    assert!(e.to_string().contains("student.w_bits"), "{e}");
    let e = Config::parse("[plan]\ntemperatures = [0.5]\n", Path::new("c.toml")).unwrap_err();
    assert!(e.to_string().contains("plan.temperatures"), "{e}");
    let e = Config::parse("[plan]\nlosses = [\"sofft\"]\n", Path::new("c.toml")).unwrap_err();
    assert!(e.to_string().contains("sofft"), "{e}");
    let e = Config::parse("[train]\nbatch_sise = 3\n", Path::new("c.toml")).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    assert!(e.to_string().contains("batch_sise"), "{e}");
}

#[test]
fn misspellings_get_a_suggestion_and_far_misses_do_not() {
    let msg = |text: &str| Config::parse(text, Path::new("c.toml")).unwrap_err().to_string();
    assert!(msg("[train]\nbatch_sise = 3\n").ends_with("did you mean `batch_size`?"));
    assert!(msg("[trian]\n").ends_with("did you mean `train`?"));
    assert!(msg("[plan]\nlosses = [\"sofft\"]\n").ends_with("did you mean `soft`?"));
    assert!(msg("[data]\nsource = \"SVHN\"\n").ends_with("did you mean `svhn`?"));
    assert!(!msg("[train]\ncolour = 3\n").contains("did you mean"));
}

#[test]
fn wrong_types_name_the_key_in_plain_words() {
    let e = Config::parse("[plan]\nname = \"x\"\n\n[train]\nbatch_size = \"big\"\n", Path::new("c.toml")).unwrap_err();
    let e = e.to_string();
    assert!(e.contains("line 5, column 14: `train.batch_size`: invalid type: string \"big\", expected a whole number >= 0"), "{e}");
}

#[test]
fn teacher_hash_follows_the_teacher_and_the_data_content() {
    let a = Config::default();
    let mut b = a.clone();
    b.student.w_bits = 4;
    b.data.dir = "moved/elsewhere".into();
    b.train.log_every = 99;
    assert_eq!(a.teacher_hash("d1"), b.teacher_hash("d1"), "student, paths and logging do not shape the teacher");
    assert_ne!(a.teacher_hash("d1"), a.teacher_hash("d2"), "other images, another teacher");
    b.teacher.epochs += 1;
    assert_ne!(a.teacher_hash("d1"), b.teacher_hash("d1"));
}

#[test]
fn study_hash_follows_the_study_and_the_data_content() {
    let a = Config::default();
    let mut b = a.clone();
    b.plan.only = vec!["soft".into()];
    b.data.dir = "moved".into();
    assert_eq!(a.study_hash("d1"), b.study_hash("d1"));
    assert_ne!(a.study_hash("d1"), a.study_hash("d2"));
    b.student.epochs += 1;
    assert_ne!(a.study_hash("d1"), b.study_hash("d1"));
}
