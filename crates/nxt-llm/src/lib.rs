//! nxt-llm (being written).
