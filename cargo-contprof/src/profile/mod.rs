//! (profile: not yet written)
