//! Engine facade.
pub struct Engine;
