"""`kotune studio [--host 127.0.0.1] [--port 7860] [--token T]`: the web UI (pip install kotune[ui]).

A small FastAPI app and one static page (no build step, no CDN). Every answer comes from kotune's own code: the
config check the CLI runs, `kotune data`'s pipeline, `kotune plan`, the run's files, `kotune chat`'s generation.
It binds to 127.0.0.1; on any other address every request needs the token. It reads and writes only under the folder
it was started in (`studio.paths`), and starts only fixed argv lists, never shell text from the page.
"""

import argparse
import ipaddress
import secrets
import sys
from pathlib import Path

from kotune.errors import KotuneError

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_HEADER = "x-kotune-token"
TOKEN_COOKIE = "kotune_token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(root: str | Path = ".", token: str | None = None, hosts: tuple[str, ...] | None = None):
    """The studio for the folder `root`; with `token`, every request must carry it (header, cookie or ?token=);
    with `hosts`, the Host header must name one of them (a page from another site that rebinds its DNS name to
    127.0.0.1 is refused)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
    from fastapi.staticfiles import StaticFiles

    from kotune.studio import config_api, i18n, preview
    from kotune.studio.chat_api import Chats, export_argv, merge_argv
    from kotune.studio.paths import PathRefused, Workspace
    from kotune.studio.runs import Jobs, past_runs

    ws = Workspace(root)
    jobs, chats = Jobs(ws), Chats(ws)
    app = FastAPI(title="kotune studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.workspace, app.state.jobs = ws, jobs

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if hosts is not None and request.url.hostname not in {h.strip("[]") for h in hosts}:
            return JSONResponse({"error": f"host '{request.url.hostname}' is not this studio's address"},
                                status_code=403)
        if token:
            given = (request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE)
                     or request.query_params.get("token") or "")
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"error": "this studio needs its token: open the address printed by "
                                              "`kotune studio` (…/?token=…)"}, status_code=401)
        response = await call_next(request)
        if token and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(KotuneError)
    async def user_error(_request, err: KotuneError):
        return JSONResponse({"error": str(err), "problems": getattr(err, "problems", [str(err)])},
                            status_code=403 if isinstance(err, PathRefused) else 400)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/i18n")
    def strings(request: Request, lang: str | None = None):
        chosen = lang if lang in i18n.LANGS else i18n.pick(request.headers.get("accept-language", ""))
        return {"lang": chosen, "strings": i18n.STRINGS[chosen], "root": str(ws.root)}

    @app.get("/api/schema")
    def schema(stage: str = "sft"):
        return config_api.schema(stage)

    @app.post("/api/validate")
    def validate(body: dict):
        raw, stage, path = _config_of(body)
        return config_api.check(raw, stage, path, ws)

    @app.get("/api/configs")
    def configs():
        found = []
        for path in (p for p in ws.files(4) if p.suffix in (".yaml", ".yml")):
            try:
                found.append(ws.relative(path))
            except PathRefused:  # a symlink that leads out: not listed
                continue
        return {"configs": sorted(found)[:500]}

    @app.post("/api/config/load")
    def load(body: dict):
        path = ws.resolve(body.get("path", ""))
        if not path.is_file():
            raise KotuneError(f"config file '{body.get('path')}' does not exist")
        text = path.read_text(encoding="utf-8")
        return {"config": config_api.parse_yaml(text, ws.relative(path)), "yaml": text, "path": ws.relative(path)}

    @app.post("/api/config/save")
    def save(body: dict):
        raw, stage, path = _config_of(body)
        target = ws.resolve(path)
        if target.suffix not in (".yaml", ".yml"):
            raise KotuneError(f"'{path}': save the config as a .yaml file")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(config_api.to_yaml(raw), encoding="utf-8")
        return {**config_api.check(raw, stage, ws.relative(target), ws), "path": ws.relative(target)}

    @app.post("/api/learn")
    def learn(body: dict):
        raw, stage, path = _config_of(body)
        _refuse_outside(raw)
        if stage != "sft":
            raise KotuneError(f"the token view covers SFT data; run `kotune data` for {stage}")
        return preview.learn(raw, path, int(body.get("rows", 8)))

    @app.post("/api/plan")
    def plan(body: dict):
        raw, stage, _ = _config_of(body)
        _refuse_outside(raw)
        target = ws.state_dir() / "plan.yaml"
        target.write_text(config_api.to_yaml(raw), encoding="utf-8")
        return preview.plan(target, int(body.get("gpus") or 1), body.get("gpu_mem") or None, stage)

    @app.post("/api/runs")
    def start_run(body: dict):
        raw, stage, path = _config_of(body)
        target = ws.resolve(path)
        result = config_api.check(raw, stage, ws.relative(target), ws)
        if not result["ok"]:
            raise KotuneError(result["message"] or "; ".join(result["studio"]))
        target.write_text(config_api.to_yaml(raw), encoding="utf-8")  # the run reads exactly what the page shows
        argv = config_api.run_argv(sys.executable, stage, ws.relative(target))
        return jobs.start("train", argv, stage=stage, config=ws.relative(target),
                          output_dir=ws.relative(raw["output_dir"]), logging_steps=raw.get("logging_steps"))

    @app.get("/api/jobs")
    def list_jobs():
        return {"jobs": jobs.list()}

    @app.get("/api/jobs/{job_id}")
    def job(job_id: str, since: int = 0):
        return jobs.get(job_id, since)

    @app.post("/api/jobs/{job_id}/stop")
    def stop(job_id: str):
        return jobs.stop(job_id)

    @app.get("/api/past")
    def past():
        return {"runs": past_runs(ws)}

    @app.post("/api/chat")
    def chat(body: dict):
        run = ws.relative(body.get("run", ""))
        chunks = chats.stream(run, body.get("side", "tuned"), str(body.get("question", "")),
                              body.get("thinking", "auto"), int(body.get("max_new_tokens", 64)))
        first = next(chunks, "")  # loading errors become a 400 here, not a broken stream
        return StreamingResponse(_prepend(first, chunks), media_type="text/plain; charset=utf-8")

    @app.post("/api/merge")
    def merge(body: dict):
        run, out = ws.relative(body.get("run", "")), ws.relative(body.get("out", ""))
        return jobs.start("merge", merge_argv(sys.executable, run, out), run=run, out=out)

    @app.post("/api/export")
    def export(body: dict):
        run, out = ws.relative(body.get("run", "")), ws.relative(body.get("out", ""))
        quant = str(body.get("quant", "f16"))
        return jobs.start("export", export_argv(sys.executable, run, out, quant), run=run, out=out)

    def _config_of(body: dict) -> tuple[dict, str, str]:
        stage = str(body.get("stage") or "sft")
        path = str(body.get("path") or f"{stage}.yaml")
        if "yaml" in body and body["yaml"] is not None:
            return config_api.parse_yaml(str(body["yaml"]), path), stage, path
        raw = body.get("config")
        if not isinstance(raw, dict):
            raise KotuneError("send the config as a mapping (config) or as YAML text (yaml)")
        return raw, stage, path

    def _refuse_outside(raw: dict) -> None:
        refused = ws.config_path_problems(raw)
        if refused:
            raise PathRefused("; ".join(refused))

    return app


def _prepend(first: str, rest):
    if first:
        yield first
    yield from rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kotune studio", description="The kotune web UI for the current folder: "
                                     "config form, what the model learns, will it fit, live runs, chat.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--token", help="required on every request; generated and printed when --host is not a "
                                        "loopback address and none is given")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        raise KotuneError("kotune studio needs its optional packages: pip install kotune[ui] "
                          "(in a checkout: pip install -e .[ui])") from None
    from kotune.logs import quiet_library_noise

    quiet_library_noise()
    token = args.token
    if not is_loopback(args.host) and not token:
        token = secrets.token_urlsafe(18)
    app = create_app(Path.cwd(), token, hosts=LOOPBACK_NAMES if is_loopback(args.host) else None)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{shown}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"kotune studio: {url}  (folder: {Path.cwd()}; Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
