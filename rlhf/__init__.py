"""RLHF stages: rankings to pairs and consensus, reward-model training, PPO, rounds and jobs."""
