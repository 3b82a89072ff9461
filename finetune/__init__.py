"""Fine-tuning: dataset building, LoRA SFT of the local planner, and planner evaluation (their runs are batch jobs)."""
