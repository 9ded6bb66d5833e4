"""The training side: stages and the gate (`train/`), what to label next (`select/`), background jobs and
pre-generation (`serve/`), and its command line."""
