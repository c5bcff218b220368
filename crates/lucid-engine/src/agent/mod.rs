pub mod editor;
pub mod truncate;
