//! nxt-trace (being written).
