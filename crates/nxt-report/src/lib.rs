//! `nxt-report`: Self-contained HTML reports (inline SVG plots) for evaluation and self-training runs.
