//! The study's loss names: what a run minimises, as the config and the run ids
//! spell it. The formulas are the engine's (`engine::losses`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// CE(z, gt): the teacher and the baseline student.
    Hard,
    /// CE(softmax(z/T), q_T): teacher targets only.
    Soft,
    /// CE(z, gt) + c * CE(softmax(z/T), q_T).
    HardSoft,
    /// CE(z, gt) + c * CE(softmax(z/T), gt).
    GtSoft,
}

impl Loss {
    /// The three distillation losses, in the order of the study's tables.
    pub const DISTILLATION: [Loss; 3] = [Loss::Soft, Loss::HardSoft, Loss::GtSoft];

    pub fn name(self) -> &'static str {
        match self {
            Loss::Hard => "hard",
            Loss::Soft => "soft",
            Loss::HardSoft => "hard_soft",
            Loss::GtSoft => "gt_soft",
        }
    }

    /// Whether the loss reads the teacher's soft targets.
    pub fn needs_teacher(self) -> bool {
        matches!(self, Loss::Soft | Loss::HardSoft)
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
