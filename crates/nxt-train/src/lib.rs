//! `nxt-train`: Supervised fine-tuning (LoRA and full) on the embedded engine, PEFT adapters out, and a hand-off to TRL for multi-GPU training.
