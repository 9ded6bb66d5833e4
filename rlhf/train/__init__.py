"""The training stages (reward model, PPO, DPO, a whole round), their settings and one registry (`configs.py`),
how a stage runs from flags or a config file and reports its progress, the gate before a switch."""
