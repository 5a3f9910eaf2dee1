//! The `acidic` binary's own modules (the library knows nothing of them):
//! flags, commands, and rendering.

pub mod args;
pub mod commands;
pub mod new;
pub mod render;
