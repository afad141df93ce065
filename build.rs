//! Tells the tests which of the tools some of them drive are on this machine,
//! so that a test whose tool is missing shows as ignored (with the reason and
//! how to install it) instead of failing or passing without running:
//! `kdtui_no_tmux` (the real-terminal tests), `kdtui_no_python3` (the
//! benchmark reference's syntax check), `kdtui_no_small_disk` (the full-disk
//! tests, which mount a small tmpfs in a user and mount namespace of their
//! own), `kdtui_no_avx2`, `kdtui_no_avx512`, `kdtui_no_avx512vnni` and
//! `kdtui_no_avxvnni` (the tests that run the integer engine's SIMD kernels
//! whatever `KDTUI_SIMD` says; the
//! build runs on the machine the tests run on). Nothing in kdtui itself
//! uses them.

use std::path::Path;

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| Path::new(&dir).join(tool).is_file()))
}

fn main() {
    println!("cargo::rerun-if-env-changed=PATH");
    for tool in ["tmux", "python3"] {
        println!("cargo::rustc-check-cfg=cfg(kdtui_no_{tool})");
        if !on_path(tool) {
            println!("cargo::rustc-cfg=kdtui_no_{tool}");
        }
    }
    println!("cargo::rustc-check-cfg=cfg(kdtui_no_avx512)");
    println!("cargo::rustc-check-cfg=cfg(kdtui_no_avx512vnni)");
    println!("cargo::rustc-check-cfg=cfg(kdtui_no_avxvnni)");
    println!("cargo::rustc-check-cfg=cfg(kdtui_no_avx2)");
    let (avx2, avx512, vnni, avxvnni) = cpu_has();
    if !avx2 {
        println!("cargo::rustc-cfg=kdtui_no_avx2");
    }
    if !avx512 {
        println!("cargo::rustc-cfg=kdtui_no_avx512");
    }
    if !(avx512 && vnni) {
        println!("cargo::rustc-cfg=kdtui_no_avx512vnni");
    }
    if !avxvnni {
        println!("cargo::rustc-cfg=kdtui_no_avxvnni");
    }
    println!("cargo::rustc-check-cfg=cfg(kdtui_no_small_disk)");
    if !can_mount_small_disk() {
        println!("cargo::rustc-cfg=kdtui_no_small_disk");
    }
}

/// Whether this user can mount a tmpfs in a namespace of its own (`unshare
/// -rm`: root can, and so can any user where the kernel allows unprivileged
/// user namespaces). The mount is gone when the namespace ends: nothing on
/// the system changes.
fn can_mount_small_disk() -> bool {
    let Some(target) = std::env::var_os("OUT_DIR") else { return false };
    std::process::Command::new("unshare")
        .args(["-rm", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs \"$0\""])
        .arg(target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this CPU has AVX2 with FMA, AVX-512 (F, BW, VL), AVX-512 VNNI
/// and AVX-VNNI.
fn cpu_has() -> (bool, bool, bool, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl");
        let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
        let avxvnni = avx2 && std::arch::is_x86_feature_detected!("avxvnni");
        (avx2, avx512, std::arch::is_x86_feature_detected!("avx512vnni"), avxvnni)
    }
    #[cfg(not(target_arch = "x86_64"))]
    (false, false, false, false)
}
