//! What a study leaves behind: the results (`store`), their statistics
//! (`stats`), the results directory (`directory`), the files written from it
//! in crash-safe order (`publish`: CSV tables, report.md, figures,
//! results.json), the files written from the event stream as it arrives
//! (`tensorboard`, `runlog`), and the `sink` both consumers feed.

pub mod directory;
pub mod figures;
pub mod publish;
pub mod report;
pub mod runlog;
pub mod sink;
pub mod stats;
pub mod store;
pub mod tables;
pub mod tensorboard;

pub use publish::{publish, PublishError};
pub use sink::Sink;
pub use store::{Failure, Results};
