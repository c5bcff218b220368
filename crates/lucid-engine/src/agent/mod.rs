pub mod truncate;
