"""What to label next: the information a label would add to the reward model, or its members' disagreement."""
