"""The research CLI: `python -m vlm_rl_assets.experiments run all | report` (see research/runner.py)."""

from vlm_rl_assets.research.runner import main

if __name__ == "__main__":
    main()
