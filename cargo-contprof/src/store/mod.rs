//! (store: not yet written)
