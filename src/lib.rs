//! Roost wired together: configuration, the app (all-in-one or split), telemetry, shutdown and
//! the allocator's upkeep.

pub mod app;
pub mod memory;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use app::{App, Role};
pub use settings::Settings;
