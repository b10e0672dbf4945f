//! `nxt-selftrain`: Self-training (NExT Algorithm 1): sample, grade, keep, fine-tune the base model, evaluate on dev, pick the best iteration; resumable.
