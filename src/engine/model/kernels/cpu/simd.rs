//! Which vector instructions the CPU kernels use, chosen at run time: the
//! release binary is built for plain x86-64 and runs on any of it, so each
//! kernel is compiled three times (`multiversion!`) and the widest variant
//! this CPU supports is called. `KDTUI_SIMD=avx2` (or `baseline`) holds the
//! kernels below what the CPU has: what `kdtui bench` uses to measure the
//! AVX2 path on an AVX-512 machine.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Baseline,
    Avx2,
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

/// What this CPU has, as far as the kernels go.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Baseline
}

/// The level the kernels run at: what the CPU has, capped by `KDTUI_SIMD`.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = match std::env::var("KDTUI_SIMD").as_deref() {
            Ok("baseline") => Level::Baseline,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        detected().min(cap)
    })
}

/// `multiversion! { pub fn name(args) -> T { body } }`: the function, compiled
/// for AVX-512, for AVX2 + FMA and for baseline x86-64, dispatching on
/// `level()`. The body is inlined into each variant, closures it calls too,
/// so the compiler vectorises it for each instruction set.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,bmi2,f16c")]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma,bmi2,f16c")]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
            match $crate::engine::model::kernels::cpu::simd::level() {
                // SAFETY: `level()` reports only instruction sets this CPU has.
                #[cfg(target_arch = "x86_64")]
                $crate::engine::model::kernels::cpu::simd::Level::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::engine::model::kernels::cpu::simd::Level::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    multiversion! {
        fn sum_of_squares(x: &[f32]) -> f32 {
            x.iter().map(|v| v * v).sum()
        }
    }

    /// `.ci/run` runs the model's tests again under `KDTUI_SIMD=avx2` and
    /// `baseline`: the cap must reach the kernels, or those runs test the
    /// widest path three times over.
    #[test]
    fn every_level_the_cpu_has_computes_the_same() {
        assert!(level() <= detected());
        let asked = match std::env::var("KDTUI_SIMD").as_deref() {
            Ok("baseline") => Level::Baseline,
            Ok("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        assert_eq!(level(), detected().min(asked));
        let x: Vec<f32> = (0..100).map(|i| i as f32 / 10.0).collect();
        let want: f32 = x.iter().map(|v| v * v).sum();
        assert_eq!(sum_of_squares(&x), want);
    }
}
