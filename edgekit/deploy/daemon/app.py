"""The HTTP/WebSocket API (FastAPI): health, metrics, detections, reload, live page.

Security (see docs/serve.md): a configured bearer token is required for mutating endpoints from
anywhere; the live page and the WebSocket need it from any non-loopback client; request bodies
are capped at ``max_upload_bytes`` (413 beyond); reload names resolve only inside the models
directory. Browsers cannot set headers on a WebSocket, so ``?token=`` is accepted too.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from edgekit import __version__
from edgekit.core.errors import ConfigError, DataError, ModelError

from .config import is_loopback
from .live_page import LIVE_PAGE
from .metrics import CONTENT_TYPE, STAGES
from .service import Service


class ReloadRequest(BaseModel):
    """Body of POST /model/reload."""

    model_config = ConfigDict(extra="forbid")
    bundle: str  # a bundle directory name inside the models directory


def _presented_token(headers: Any, query: Any) -> Optional[str]:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return query.get("token")


def _allowed(token: Optional[str], client_host: Optional[str], headers: Any, query: Any, always: bool) -> bool:
    """``always``: the token is needed from loopback too (mutating endpoints)."""
    local = bool(client_host) and is_loopback(client_host or "")
    if token is None:
        return local  # without a token the daemon only ever listens on loopback (config.check_bind)
    if local and not always:
        return True
    given = _presented_token(headers, query)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        seen = [0]
        state = {"started": False, "rejected": False}

        async def limited_receive() -> Any:
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if seen[0] > self.limit and not state["rejected"]:
                # Answer 413 now and tell the app the client left: raising here would be turned into
                # a 400 by the framework's body parser.
                state["rejected"] = True
                if not state["started"]:
                    state["started"] = True
                    await self._too_large(send)
                return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            if state["rejected"]:
                return  # the 413 went out already
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:  # noqa: BLE001 - the app noticing the "disconnect" we made up
            if not state["rejected"]:
                raise

    async def _too_large(self, send: Any) -> None:
        body = b'{"detail":"request body too large (max %d bytes)"}' % self.limit
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _target_call(fn: Callable[..., Dict[str, Any]], *args: Any) -> Dict[str, Any]:
    """A /references call: a bad photo is 400, a bundle without references 409, no model yet 503."""
    try:
        return fn(*args)
    except DataError as e:
        raise HTTPException(400, e.format()) from None
    except ConfigError as e:
        raise HTTPException(409, e.format()) from None
    except ModelError as e:
        raise HTTPException(503, e.format()) from None


# A reference photo is letterboxed to the encoder's few hundred pixels; 40 MP still admits any phone photo
# that fits the body limit. Beyond it a small compressed upload (a "decompression bomb": 200 KB of PNG,
# 8000x8000 pixels) would decode to hundreds of MB on a Jetson that shares its 8 GB with the engine.
MAX_REFERENCE_PIXELS = 40_000_000


def _header_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG IHDR or a JPEG SOF header, None for anything else.

    Hand-written because OpenCV reads no header without decoding the whole image and Pillow is not a
    device dependency; only these two formats are promised to clients, others are decoded then checked."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame: P, Y, X
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _decode_photo(i: int, name: str, data: bytes) -> Any:
    """One uploaded photo as BGR uint8, refused in one line (400) when too large or undecodable."""
    from edgekit.core.image_files import imdecode

    size = _header_size(data)
    if size is not None and size[0] * size[1] > MAX_REFERENCE_PIXELS:
        raise HTTPException(400, f"images[{i}] ({name}) is {size[0]} x {size[1]} pixels, more than "
                                 f"{MAX_REFERENCE_PIXELS // 1_000_000} MP: send a smaller photo of the target")
    img = imdecode(data)  # None also where OpenCV raises (a header too large for it)
    if img is None:
        raise HTTPException(400, f"images[{i}] ({name}, {len(data)} bytes) is not a decodable "
                                 "image: send JPEG or PNG photos")
    if img.shape[0] * img.shape[1] > MAX_REFERENCE_PIXELS:
        raise HTTPException(400, f"images[{i}] ({name}) is {img.shape[1]} x {img.shape[0]} pixels, more than "
                                 f"{MAX_REFERENCE_PIXELS // 1_000_000} MP: send a smaller photo of the target")
    return img


async def _uploaded_images(request: Request) -> List[Any]:
    """The decoded images of a multipart POST /references (field ``images``, 1-3 files); 400 in one line otherwise."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise HTTPException(400, "POST /references takes multipart/form-data with 1-3 files under 'images' "
                                 "(curl -F images=@ref1.jpg -F images=@ref2.jpg ...)")
    try:
        form = await request.form(max_files=8, max_fields=8)
    except Exception as e:  # noqa: BLE001 - the multipart parser's own errors: a malformed body
        raise HTTPException(400, f"malformed multipart body: {str(e).splitlines()[0][:120] if str(e) else e}") from None
    files = [f for f in form.getlist("images") if hasattr(f, "read")]
    if not 1 <= len(files) <= 3:
        raise HTTPException(400, f"got {len(files)} files under 'images', the target needs 1 to 3 reference photos")
    images = []
    for i, f in enumerate(files, 1):
        images.append(_decode_photo(i, f.filename or "unnamed", await f.read()))
    return images


def create_app(service: Service, token: Optional[str]) -> Any:
    app = FastAPI(title="edgekit serve", version=__version__,
                  description="On-device detection service: health, Prometheus metrics, detections "
                              "(latest and a WebSocket stream), model hot reload and a live page.")

    def require(request: Request, always: bool) -> None:
        host = request.client.host if request.client else None
        if not _allowed(token, host, request.headers, request.query_params, always):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health/live", tags=["health"])
    def live() -> Dict[str, Any]:
        """200 while the process runs (also while the engine builds)."""
        return {"status": "alive", "state": service.state, "state_s": service.snapshot_state()["state_s"]}

    @app.get("/health/ready", tags=["health"])
    def ready() -> JSONResponse:
        """200 once warmed up and serving; 503 before that, while draining and after a fatal error."""
        s = service.snapshot_state()
        body = {"status": "ready" if s["ready"] else "not ready", "state": s["state"], "state_s": s["state_s"],
                "error": s["error"], "source": s["source"]["state"], "model": s["model"].get("name")}
        return JSONResponse(body, status_code=200 if s["ready"] else 503)

    @app.get("/metrics", tags=["health"])
    def metrics() -> Response:
        """Prometheus text format."""
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/detections/latest", tags=["detections"])
    def latest() -> Dict[str, Any]:
        """The newest frame's detections (Detections schema under 'detections', frame pixels)."""
        payload = service.latest()
        if payload is None:
            raise HTTPException(404, "no frame processed yet")
        return payload

    @app.get("/model", tags=["model"])
    def model() -> Dict[str, Any]:
        return {"model": service.model_info(), "reload": dict(service.reload_status),
                "models_dir": str(service.models_dir)}

    @app.post("/model/reload", status_code=202, tags=["model"])
    def reload(body: ReloadRequest, request: Request) -> Dict[str, Any]:
        """Load bundle ``body.bundle`` from the models directory in the background; the old model
        keeps serving until the new one is verified and warmed up, and stays if loading fails."""
        require(request, always=True)
        try:
            return service.request_reload(body.bundle)
        except ConfigError as e:
            raise HTTPException(400, e.format()) from None
        except ModelError as e:
            raise HTTPException(409 if "already running" in str(e) else 404, e.format()) from None

    @app.get("/references", tags=["references"])
    def references() -> Dict[str, Any]:
        """RefDet bundles: which target is set (the bundle default or custom photos)."""
        return _target_call(service.references)

    @app.post("/references", tags=["references"])
    async def set_references(request: Request) -> Dict[str, Any]:
        """RefDet bundles: multipart form with 1-3 image files under ``images``; they become the target."""
        require(request, always=True)
        images = await _uploaded_images(request)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_target_call, service.set_references, images)

    @app.delete("/references", tags=["references"])
    def clear_references(request: Request) -> Dict[str, Any]:
        """RefDet bundles: back to the bundle's default target."""
        require(request, always=True)
        return _target_call(service.clear_references)

    @app.get("/", response_class=HTMLResponse, tags=["live"])
    def page(request: Request) -> HTMLResponse:
        """The live page: frame, boxes, fps, latency, drops, model."""
        require(request, always=False)
        return HTMLResponse(LIVE_PAGE)

    @app.get("/live/snapshot", tags=["live"])
    def snapshot(request: Request) -> Dict[str, Any]:
        """What the live page draws: the newest frame (JPEG, base64), its detections and the counters."""
        require(request, always=False)
        s = service.snapshot_state()
        latest = service.latest_jpeg()
        frame = None if latest is None else {"payload": latest[0], "jpeg": base64.b64encode(latest[1]).decode()}
        reg = service.metrics.registry
        drops = {st: reg.get_sample_value("edgekit_frames_dropped_total", {"stage": st}) or 0.0 for st in STAGES}
        return {"state": s["state"], "fps": s["fps"], "model": s["model"], "source": s["source"],
                "dropped": drops, "subscribers": s["subscribers"], "frame": frame}

    @app.websocket("/ws/detections")
    async def stream(ws: WebSocket) -> None:
        """One JSON message per frame (the /detections/latest payload); slow clients lose old frames."""
        host = ws.client.host if ws.client else None
        if not _allowed(token, host, ws.headers, ws.query_params, always=False):
            await ws.close(code=1008)
            return
        await ws.accept()
        sub = service.fanout.subscribe(asyncio.get_event_loop())
        # Listen too: a client's close frame is answered at once instead of after its close timeout.
        incoming = asyncio.ensure_future(ws.receive())
        try:
            while not service.done.is_set():
                batch = asyncio.ensure_future(sub.next_batch(timeout=0.5))
                await asyncio.wait({incoming, batch}, return_when=asyncio.FIRST_COMPLETED)
                if batch.done():
                    for text in batch.result():
                        await ws.send_text(text)
                        sub.sent += 1
                else:
                    batch.cancel()
                if incoming.done():
                    if incoming.result()["type"] == "websocket.disconnect":
                        return
                    incoming = asyncio.ensure_future(ws.receive())  # clients have nothing to say: ignored
            await ws.close(code=1001)
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - the client left, or shutdown cancelled a
            pass  # send to a client that stopped reading: nothing to tell it either way
        finally:
            incoming.cancel()
            service.fanout.unsubscribe(sub)

    return BodyLimit(app, service.cfg.max_upload_bytes), app


__all__ = ["create_app", "BodyLimit", "ReloadRequest"]
