"""The review CLI (reviewing/ holds the code):

  python -m vlm_rl_assets.review serve [--port 8766] [--who NAME]   pages with right/wrong labelling, on 127.0.0.1
  python -m vlm_rl_assets.review write [CATEGORY ...]               rewrite the stored pages (review/<c>.html)
  python -m vlm_rl_assets.review export-labelstudio CATEGORY OUT     the page's sample as Label Studio tasks (JSON)

The store is the pipeline config's (`--config`, else `$VLM_RL_CONFIG`, else the bundled default; `--root` overrides
its storage.root), as the assets use it. Labels are saved as `$VLM_RL_REVIEWER`, else the OS user, unless the page's
form says otherwise.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from pathlib import Path

from vlm_rl_assets.config import configured, load_config
from vlm_rl_assets.reviewing.labelstudio import LABEL_CONFIG, labelstudio_tasks
from vlm_rl_assets.reviewing.pages import latest_tables, write_page
from vlm_rl_assets.store.open import open_store

REVIEWER_ENV = "VLM_RL_REVIEWER"
DEFAULT_PORT = 8766


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vlm_rl_assets.review", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="pipeline YAML (default: $VLM_RL_CONFIG, else the bundled default)")
    parser.add_argument("--root", help="storage root, instead of the config's storage.root")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the review pages and save the labels given on them")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: no authentication)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--who", default=os.environ.get(REVIEWER_ENV) or getpass.getuser(), help="default labeller")
    write = commands.add_parser("write", help="rewrite the stored review pages from the tables on disk")
    write.add_argument("categories", nargs="*", help="default: every configured category")
    export = commands.add_parser("export-labelstudio", help="the review sample of a category as Label Studio tasks")
    export.add_argument("category")
    export.add_argument("out", type=Path, help="the tasks file to write (.json); the labelling interface is printed")
    args = parser.parse_args(argv)

    config = load_config(args.config) if args.config else configured()
    store = open_store(args.root or config.storage.root, config.storage.cache_path)
    if args.command == "serve":
        import uvicorn  # the server's stack, loaded only to serve

        from vlm_rl_assets.reviewing.server import review_app

        app = review_app(store, list(config.categories), args.who)
        print(f"review pages of {store.subroot('')} at http://{args.host}:{args.port}/", flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    elif args.command == "export-labelstudio":
        config.category(args.category)
        tasks = labelstudio_tasks(latest_tables(store, args.category), store.read_bytes)
        args.out.write_text(json.dumps(tasks))
        print(
            f"wrote {len(tasks)} Label Studio tasks to {args.out}; the project's labelling interface:\n{LABEL_CONFIG}"
        )
    else:
        for category in args.categories or config.categories:
            config.category(category)  # an unknown name fails here, naming the configured ones
            print(write_page(store, latest_tables(store, category)))


if __name__ == "__main__":
    main()
