"""A small read-only status page for the gateway: one HTML page and its JSON, served from the agent.

Why this shape: Frigate, Zigbee2MQTT and ESPHome users open the gateway in a browser to see what it does.
The page is plain HTML with inline SVG sparklines and a meta refresh: no build step, no JavaScript, nothing
downloaded. It renders the view the agent loop copies out of its own state (`AgentService.status_view`),
so it shows what the agent knows, never a second account of it. Off by default, bound to localhost.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

View = Mapping[str, Any]
_STYLE = " ".join(
    (
        "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}",
        "h1{font-size:1.3em;margin:0 0 .2em} h2{font-size:1.05em;margin:1.4em 0 .4em}",
        "table{border-collapse:collapse;background:#fff}",
        "td,th{padding:.3em .7em;border-bottom:1px solid #e4e4e4;text-align:left}",
        "th{font-weight:600;color:#555} .num{text-align:right;font-variant-numeric:tabular-nums}",
        ".ok{color:#18794e} .bad{color:#c62828;font-weight:600} .muted{color:#888}",
        ".pill{display:inline-block;padding:0 .5em;border-radius:1em;background:#eee}",
        ".critical{background:#c62828;color:#fff} .alert{background:#ef6c00;color:#fff}",
        ".warning{background:#f9a825}",
    )
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def sparkline(scores: Sequence[float], threshold: float, width: int = 160, height: int = 28) -> str:
    """Inline SVG: the scores as a line, the threshold as a dashed red line, on a shared scale."""
    if not scores:
        return '<span class="muted">waiting for a full window</span>'
    top = max(max(scores), threshold, 1e-12) * 1.1
    step = width / max(len(scores) - 1, 1)

    def y(value: float) -> float:
        return height - min(max(value, 0.0), top) / top * height

    points = " ".join(f"{i * step:.1f},{y(v):.1f}" for i, v in enumerate(scores))
    limit = f"{y(threshold):.1f}"
    return "".join(
        (
            f'<svg class="spark" width="{width}" height="{height}" role="img" aria-label="recent scores">',
            f'<line x1="0" x2="{width}" y1="{limit}" y2="{limit}" stroke="#c62828" stroke-dasharray="3,2"/>',
            f'<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{points}"/></svg>',
        )
    )


def _row(cells: Sequence[str], css: str = "", header: bool = False) -> str:
    """One table row; each cell is ready HTML, a leading '#' marks a number column."""
    tag = "th" if header else "td"
    out = [f"<{tag} class=num>{c[1:]}</{tag}>" if c.startswith("#") else f"<{tag}>{c}</{tag}>" for c in cells]
    return f"<tr class='{css}'>{''.join(out)}</tr>"


def _pill(severity: object) -> str:
    return f"<span class='pill {_e(severity)}'>{_e(severity)}</span>"


def _channels(alert: Mapping[str, Any] | None) -> str:
    if not alert:
        return ""
    top = alert.get("top_channels") or []
    return ", ".join(f"{_e(c.get('channel'))} {float(c.get('contribution', 0)):.3g}" for c in top)


def _devices(view: View) -> list[str]:
    header = ["device", "availability", "#last score", "#threshold", "recent scores", "open alert"]
    rows = [_row(header, header=True)]
    for device in view.get("devices", []):
        scores = device.get("scores") or []
        threshold = float(device.get("threshold", 0.0))
        alert = device.get("open_alert")
        online = device.get("online")
        availability = "-" if online is None else ("online" if online else "offline")
        over = bool(scores) and scores[-1] > threshold
        last = (
            f"<span class=bad>{scores[-1]:.4g}</span>" if over else (f"{scores[-1]:.4g}" if scores else "-")
        )
        state = f"{_pill(alert.get('severity'))} {_channels(alert)}" if alert else ""
        cells = [
            _e(device.get("name")),
            availability,
            "#" + last,
            f"#{threshold:.4g}",
            sparkline(scores, threshold),
        ]
        rows.append(_row([*cells, state], "device"))
    return rows


def _alerts(view: View) -> list[str]:
    rows = [_row(["time", "device", "event", "severity", "#score", "top channels"], header=True)]
    for alert in view.get("recent_alerts", []):
        when = time.strftime("%H:%M:%S", time.localtime(float(alert.get("ts", 0))))
        cells = [when, _e(alert.get("device")), _e(alert.get("type")), _pill(alert.get("severity"))]
        rows.append(_row([*cells, f"#{float(alert.get('score', 0)):.4g}", _channels(alert)], "alert-row"))
    return rows


def render(view: View, refresh_s: float) -> str:
    """The whole page from one status view."""
    counters = view.get("counters", {})
    rejected = view.get("rejected", {})
    bundle = view.get("bundle", {})
    thresholds = ", ".join(f"{_e(k)} {float(v):.4g}" for k, v in bundle.get("thresholds", {}).items())
    connected = view.get("connected")
    ordered = sorted(rejected.items(), key=lambda item: -item[1])
    rejected_rows = "".join(_row([_e(reason), f"#{int(n)}"], "rejected") for reason, n in ordered)
    rejected_rows = rejected_rows or _row(["none", ""], "muted")
    link = "<span class=ok>connected</span>" if connected else "<span class=bad>reconnecting</span>"
    counts = " &middot; ".join(f"{_e(k)} <b>{_e(v)}</b>" for k, v in counters.items())
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="refresh" content="{refresh_s:g}">',
        f"<title>EdgeGAN agent {_e(view.get('agent_id'))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>EdgeGAN agent {_e(view.get('agent_id'))}</h1>",
        f"<div>broker {link}"
        f" &middot; bundle <code>{_e(bundle.get('id'))}</code> &middot; thresholds {thresholds}</div>",
        f"<div class=muted>{counts}; refreshed every {refresh_s:g} s</div>",
        "<h2>Devices</h2><table id=devices>", *_devices(view), "</table>",
        "<h2>Recent alerts</h2><table id=alerts>", *_alerts(view), "</table>",
        "<h2>Rejected readings, by reason</h2><table id=rejected>",
        _row(["reason", "#count"], header=True), rejected_rows, "</table>",
        f"<h2>Health</h2><pre>{_e(json.dumps(view.get('health', {}), indent=1))}</pre>",
        "</body></html>",
    ]  # fmt: skip
    return "".join(parts)


def serve_status_page(
    port: int, address: str, view: Callable[[], View | None], refresh_s: float
) -> tuple[Callable[[], None], int]:
    """Serve `/` (the page) and `/status.json` on a background thread; returns the function that stops it
    and the port it listens on (`port` 0 picks a free one)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            current = view() or {"agent_id": "starting"}
            if self.path in ("/", "/index.html"):
                body, kind = render(current, refresh_s).encode(), "text/html; charset=utf-8"
            elif self.path == "/status.json":
                body, kind = json.dumps(current, allow_nan=False).encode(), "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the http.server API)
            log.debug("status page: %s", format % args)

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="status-page", daemon=True).start()
    log.info("status page on http://%s:%d/", address, server.server_address[1])

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop, int(server.server_address[1])
