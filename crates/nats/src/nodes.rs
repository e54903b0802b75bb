//! (filled by its helper)
