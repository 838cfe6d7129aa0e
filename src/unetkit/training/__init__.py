"""Training: the plan decided once (plan, finetune, autoconfig), the one loop (loop), its steps,
schedule and losses, what differs per kind of model (tasks), resuming (resume) and the run folder."""
