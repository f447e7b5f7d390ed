"""Iterative on-policy rounds: round r samples from round r-1's policy, so its pairs describe the model being
trained; the store keys of a round's tables and checkpoints, and the rule that stops the rounds."""
