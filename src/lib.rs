//! Roost wired together: configuration, the all-in-one app, telemetry and shutdown.

pub mod app;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use app::App;
pub use settings::Settings;
