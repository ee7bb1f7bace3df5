//! Plugins as things people share: what a component says about itself ([`inspect`]), what it asks
//! for and what the user granted ([`capabilities`]).
//!
//! Running a plugin is [`crate::sandbox`]'s job; this module reads and decides.

pub mod artifact;
pub mod capabilities;
pub mod inspect;
pub mod lock;
pub mod name;
pub mod registry;
pub mod resolve;
pub mod signature;

pub use capabilities::Capabilities;
pub use inspect::{Inspected, inspect};
