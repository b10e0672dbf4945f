//! nxt-core (being written).
