//! The study's loss names: what a run minimises, as the config and the run ids
//! spell it. The formulas are the engine's (`engine::losses`, one file each).
//!
//! `losses!` below is the registry: one line per loss gives its name, whether
//! it reads the teacher, and what it is. Everything that lists losses (config
//! parsing and its "did you mean", the plan, the report's tables, the figures,
//! the monitor's sweep and the statistics) goes through `Loss::ALL` and these
//! properties, so a new loss is this line and its file of maths.

use serde::{Deserialize, Serialize};

macro_rules! losses {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, teacher: $teacher:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
        #[serde(rename_all = "snake_case")]
        pub enum Loss {
            $($(#[$doc])* $variant,)*
        }

        impl Loss {
            /// Every loss, in registry order (the order of the report's columns).
            pub const ALL: &[Loss] = &[$(Loss::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Loss::$variant => $name,)*
                }
            }

            /// Whether the loss reads the teacher's logits.
            pub fn needs_teacher(self) -> bool {
                match self {
                    $(Loss::$variant => $teacher,)*
                }
            }
        }
    };
}

losses! {
    /// CE(z, gt): the teacher and the baseline student.
    Hard = "hard", teacher: false;
    /// CE(softmax(z/T), q_T): teacher targets only.
    Soft = "soft", teacher: true;
    /// CE(z, gt) + c * CE(softmax(z/T), q_T).
    HardSoft = "hard_soft", teacher: true;
    /// CE(z, gt) + c * CE(softmax(z/T), gt): labels softened by T, no teacher.
    GtSoft = "gt_soft", teacher: false;
    /// CE(z, gt) + c * (alpha * TCKD + beta * NCKD): decoupled KD (Zhao et al. 2022).
    Dkd = "dkd", teacher: true;
    /// CE(z, gt) + c * (beta * inter + gamma * intra Pearson terms): DIST (Huang et al. 2022).
    Dist = "dist", teacher: true;
    /// CE(z, gt) + c * CE on z-scored logits (Sun et al. 2024).
    LogitStd = "logit_std", teacher: true;
}

impl Loss {
    /// The original study's three distillation losses: the default plan.
    pub const DISTILLATION: [Loss; 3] = [Loss::Soft, Loss::HardSoft, Loss::GtSoft];

    /// Position in `ALL`: what gives a loss the same colour everywhere.
    pub fn index(self) -> usize {
        Loss::ALL.iter().position(|&l| l == self).unwrap_or(0)
    }

    /// Whether a plan may list it in `plan.losses`: every loss but the
    /// baseline's own `hard`.
    pub fn distills(self) -> bool {
        self != Loss::Hard
    }

    /// The names a plan may list, for error messages.
    pub fn plan_names() -> String {
        Loss::ALL.iter().filter(|l| l.distills()).map(|l| l.name()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run id, a config and results.json all spell a loss the same way.
    #[test]
    fn the_registry_name_is_the_config_name() {
        for &loss in Loss::ALL {
            assert_eq!(serde_json::to_string(&loss).unwrap(), format!("\"{}\"", loss.name()));
            assert_eq!(serde_json::from_str::<Loss>(&format!("\"{}\"", loss.name())).unwrap(), loss);
            assert_eq!(Loss::ALL[loss.index()], loss);
        }
    }
}
