//! (symbolize: not yet written)
