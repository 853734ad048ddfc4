//! Roost wired together: configuration, the app (all-in-one or split), telemetry and shutdown.

pub mod app;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use app::{App, Role};
pub use settings::Settings;
