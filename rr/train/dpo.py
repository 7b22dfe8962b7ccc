"""Contrastive rationale distillation (`config.trainer = "dpo"`)."""
