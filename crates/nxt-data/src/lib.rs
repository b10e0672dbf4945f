//! nxt-data (being written).
