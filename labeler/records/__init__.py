"""What training and background work record in the store: job rows, reward models, policy versions, rounds and
the leases of singleton workers."""
