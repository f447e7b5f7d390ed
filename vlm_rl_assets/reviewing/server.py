"""The labelling server: a category's review page with right/wrong buttons and keys, and the endpoint that saves
each label into the store (labels.py). Only configured categories are routes; any other name, `..` or an absolute
path among them, encoded or not, is a 404, so no request names a file. Bind it to 127.0.0.1 (the CLI's default):
it has no authentication."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import polars as pl
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from vlm_rl_assets.names import FILTERED_ROLLOUTS
from vlm_rl_assets.reviewing.labels import LabelsFileError, read_human_labels, save_label
from vlm_rl_assets.reviewing.pages import TEMPLATES, Labelling, latest_tables, review_page
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import MissingUpstreamError, Store

MAX_BODY_BYTES = 64 * 1024  # a label request is about 100 bytes; a larger body is not one
MAX_WHO_CHARS = 200


def review_app(store: Store, categories: Sequence[str], who: str) -> Starlette:
    """The app serving `store`'s pages of `categories`; `who` is the default labeller shown in the page's form."""
    handlers = _Handlers(store, tuple(categories), who)
    routes = [
        Route("/", handlers.index),
        Route("/review/{category}", handlers.page),
        Route("/labels/{category}", handlers.post_label, methods=["POST"]),
    ]
    return Starlette(routes=routes)


class _Handlers:
    """The app's endpoints over one store, its configured categories and the default labeller."""

    def __init__(self, store: Store, categories: tuple[str, ...], who: str) -> None:
        self.store, self.categories, self.who = store, categories, who
        self.saving = threading.Lock()  # a save reads, updates and rewrites the labels file: one at a time

    def category_of(self, request: Request) -> str:
        category = request.path_params["category"]
        if category not in self.categories:
            raise HTTPException(
                404, f"unknown category {category!r}; this store's categories are {sorted(self.categories)}"
            )
        return category

    def index(self, request: Request) -> Response:
        template = TEMPLATES.get_template("index.html.j2")
        return HTMLResponse(template.render(root=self.store.subroot(""), categories=sorted(self.categories)))

    def page(self, request: Request) -> Response:
        category = self.category_of(request)
        try:
            tables = latest_tables(self.store, category)
            labels = read_human_labels(self.store, category)
        except MissingUpstreamError as err:
            return Response(str(err), 404)
        except LabelsFileError as err:
            return Response(str(err), 500)
        labelling = Labelling(endpoint=f"/labels/{category}", who=self.who, labels=labels)
        return HTMLResponse(review_page(tables, self.store.read_bytes, labelling))

    async def post_label(self, request: Request) -> Response:
        category = self.category_of(request)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # a page on another site may post text/plain without asking; application/json needs a CORS preflight,
            # which this server never grants, so only its own pages can label
            return JSONResponse({"error": "send the label as application/json"}, 415)
        try:
            body = json.loads(await _capped_body(request))
        except BodyTooLarge:
            return JSONResponse({"error": f"a label request is at most {MAX_BODY_BYTES // 1024} KB"}, 413)
        except ValueError:
            return JSONResponse({"error": "the body must be JSON: prompt_id, sample_idx, label (true/false), who"}, 400)
        problem = _invalid(body)
        if problem:
            return JSONResponse({"error": problem}, 400)
        return await run_in_threadpool(self.save, category, body)

    def save(self, category: str, body: dict) -> Response:
        """Save a valid label request's label on the rollout it names (a 404 if the rollout is not there)."""
        with self.saving:
            try:
                rows = self.store.read_table(FILTERED_ROLLOUTS, category, schemas.FILTERED_ROLLOUTS)
            except MissingUpstreamError as err:
                return JSONResponse({"error": str(err)}, 404)
            item = rows.filter(
                (pl.col("prompt_id") == body["prompt_id"]) & (pl.col("sample_idx") == body["sample_idx"])
            )
            if not item.height:
                error = f"no rollout {body['prompt_id']} #{body['sample_idx']} in filtered_rollouts[{category}]; reload the page"
                return JSONResponse({"error": error}, 404)
            try:
                labeller = body["who"].strip() or self.who
                saved = save_label(self.store, category, item.row(0, named=True), body["label"], labeller)
                count = read_human_labels(self.store, category).height
            except LabelsFileError as err:
                return JSONResponse({"error": str(err)}, 500)
        return JSONResponse({"label": saved["label"], "replaced": saved["replaced"], "labels": count})


class BodyTooLarge(Exception):
    """A request body over MAX_BODY_BYTES: refused with a 413 before it is all read."""


async def _capped_body(request: Request) -> bytes:
    """The body, read no further than MAX_BODY_BYTES (a Content-Length over it is refused unread)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge
    return bytes(body)


def _invalid(body: object) -> str | None:
    """Why a label request's body cannot be saved, or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    types = {"prompt_id": str, "sample_idx": int, "label": bool, "who": str}
    wrong = [
        k for k, t in types.items() if not isinstance(body.get(k), t) or (t is int and isinstance(body.get(k), bool))
    ]
    if wrong:
        return f"{wrong} missing or of the wrong type; send prompt_id (text), sample_idx (integer), label (true/false), who"
    if len(body["who"]) > MAX_WHO_CHARS:
        return f"who is {len(body['who'])} characters; a labeller's name is at most {MAX_WHO_CHARS}"
    return None
