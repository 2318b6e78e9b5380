//! (compare: not yet written)
