"""Look at every datum: a category's review page (prompts, rollouts with verdicts, pairs, quarantine) and the human
labels collected on it, which `calibration_labels: human` checks the judge against. The CLI is `review.py`."""
