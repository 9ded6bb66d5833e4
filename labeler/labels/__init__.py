"""Label maths over the store: rankings to pairs, consensus and agreement, labeler reliability, gold sets,
quality, win-rate, costs, counts, browsing, preference records, and verifiable instructions with their rule
judge. Torch-free."""
