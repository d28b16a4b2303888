"""tunedModels: real LoRA tuning jobs on the CPU (a trainer process per job, durable on the operations runner),
the adapters served by the base model's engine, and tuned models' permissions."""
