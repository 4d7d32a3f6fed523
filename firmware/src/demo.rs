//! The built-in demo guest.
