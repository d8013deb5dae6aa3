"""agents: model loading, batched rollouts, evaluation and the RRR-GRPO / RISE-AWR trainers."""
