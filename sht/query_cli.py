"""``sht search``, ``sht export``, ``sht thumb``, ``sht snapshot`` and ``sht settings``: the store's query API
from a shell.

Errors are one line on stderr and a non-zero exit; ``--json`` output is one JSON
array on stdout with times in ISO 8601 UTC.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from shared.clock import iso_utc
from shared.protocol.errors import ProtocolError
from shared.protocol.results import Event, EventPage, ExportResult, Segment, SegmentPage, Thumbnail
from shared.query_client import StoreClient, StoreError
from shared.settings import SETTINGS, STORE_SETTINGS, SettingError, value_from_text
from shared.store_list import StoreListError
from shared.timespec import TimeSpecError, format_local, parse_time

DEFAULT_STORE = "http://127.0.0.1:8100"
PAGE = 5000


def add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", default=os.environ.get("SHT_STORE", DEFAULT_STORE),
                   help=f"store URL (default $SHT_STORE or {DEFAULT_STORE}); or several, comma-separated "
                   "(http://nas1:8100,http://nas2:8100): the first that answers")
    p.add_argument("--token", default=os.environ.get("SHT_TOKEN"),
                   help="viewer or admin token (default $SHT_TOKEN; `sht token create` makes one)")
    p.add_argument("--ca", help="CA certificate to verify a wss:// or https:// store with")


def client(args: argparse.Namespace) -> StoreClient:
    return StoreClient(args.store, token=args.token, ca=args.ca)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="list recorded segments or events")
    add_store_arg(search)
    search.add_argument("--camera", action="append", default=[], help="camera id; repeat for more (default: all)")
    search.add_argument("--from", dest="from_", default="1h ago", help="start time (default: 1h ago)")
    search.add_argument("--to", default="now", help="end time (default: now)")
    search.add_argument("--events", action="store_true", help="list events instead of segments")
    search.add_argument("--label", action="append", default=[], metavar="LABEL",
                        help="with --events: only events the store's detector gave this label (e.g. person); "
                        "repeat for any of several")
    search.add_argument("--json", action="store_true", help="print one JSON array")
    search.set_defaults(func=lambda a: _run(_search, a))

    export = sub.add_parser("export", help="one camera's time range as a single MP4")
    add_store_arg(export)
    export.add_argument("--camera", required=True)
    export.add_argument("--from", dest="from_", required=True)
    export.add_argument("--to", required=True)
    export.add_argument("-o", "--output", required=True, help="MP4 file to write")
    export.set_defaults(func=lambda a: _run(_export, a))

    thumb = sub.add_parser("thumb", help="a JPEG of the frame nearest a time")
    add_store_arg(thumb)
    thumb.add_argument("--camera", required=True)
    thumb.add_argument("--at", required=True)
    thumb.add_argument("--width", type=int, default=320)
    thumb.add_argument("-o", "--output", required=True, help="JPEG file to write")
    thumb.set_defaults(func=lambda a: _run(_thumb, a))

    snap = sub.add_parser("snapshot", help="an event's snapshot: the detector's best frame of it, object boxed")
    add_store_arg(snap)
    snap.add_argument("--event", required=True, type=int, metavar="ID", help="event id (`sht search --events`)")
    snap.add_argument("-o", "--output", required=True, help="JPEG file to write")
    snap.set_defaults(func=lambda a: _run(_snapshot, a))

    sett = sub.add_parser("settings", help="show or change a camera's runtime settings",
                          epilog=settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store_arg(sett)
    sett.add_argument("--camera", help="camera id (default: all)")
    sett.add_argument("--by", default=os.environ.get("USER", "cli"), help="who is changing it (for the history)")
    sett.add_argument("--history", action="store_true", help="show the history of changes")
    sett.add_argument("--json", action="store_true")
    sett.add_argument("assignment", nargs="*", metavar="KEY=VALUE", help="settings to change (needs --camera)")
    sett.set_defaults(func=lambda a: _run(_settings, a))


def settings_help() -> str:
    """The settings a camera has, from their one definition (shared/settings.py)."""
    lines = ["settings (KEY=VALUE, the VALUE in JSON or a bare word such as motion; labels as person,car):"]
    width = max(map(len, SETTINGS), default=0)
    for key, spec in SETTINGS.items():
        values = spec.hint() + (" or null" if spec.nullable else "")
        lines.append(f"  {key:<{width}}  {values}; default {json.dumps(spec.default)}; "
                     f"applied by the {spec.applied_by}")
        lines.append(f"  {'':<{width}}  {spec.description}")
    lines.append("store-wide settings (without --camera):")
    for key, spec in STORE_SETTINGS.items():
        lines.append(f"  {key:<{width}}  {spec.hint()}; default {json.dumps(spec.default)}")
        lines.append(f"  {'':<{width}}  {spec.description}")
    return "\n".join(lines)


def _fail(message: str) -> int:
    print(f"sht: error: {message}", file=sys.stderr)
    return 2


def _run(command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]], args: argparse.Namespace) -> int:
    try:
        return asyncio.run(command(args))
    except (TimeSpecError, StoreListError) as exc:
        return _fail(str(exc))
    except (StoreError, ProtocolError) as exc:
        where = f" ({exc.field})" if exc.field else ""
        return _fail(f"{exc.message}{where}")
    except OSError as exc:
        return _fail(str(exc))


def _range(args: argparse.Namespace) -> tuple[int, int]:
    start, end = parse_time(args.from_), parse_time(args.to)
    if end <= start:
        raise TimeSpecError(f"--to ({args.to!r}) must be after --from ({args.from_!r})")
    return start, end


async def _search(args: argparse.Namespace) -> int:
    if args.label and not args.events:
        return _fail("--label filters events: add --events")
    start, end = _range(args)
    method = "events" if args.events else "segments"
    items: list[Segment | Event] = []
    read_page = EventPage.from_json if args.events else SegmentPage.from_json
    labels = {"labels": args.label} if args.label else {}
    async with client(args) as store:
        after = None
        while True:
            page = read_page(await store.call(method, cameras=args.camera, from_us=start, to_us=end, limit=PAGE,
                                              after=after, **labels))
            items += page.items
            if not (after := page.next):
                break
    if args.label:  # a store from before labels ignores the filter: its events are not what was asked for
        items = [e for e in items if isinstance(e, Event) and e.labels and not e.labels.keys().isdisjoint(args.label)]
    if args.json:
        print(json.dumps([_public(item) for item in items], indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(items)} {method}, {format_local(start)} → {format_local(end)} (local time)")
    if args.events:
        cols = ("id", "camera", "start", "end", "kind", "score", "label", "label score", "locked")
        for c in cols:
            table.add_column(c)
    else:
        for c in ("camera", "start", "end", "seconds", "frames", "MB", "node"):
            table.add_column(c)
    for item in items:
        if isinstance(item, Event):
            end_text = "(going on)" if item.open else format_local(item.end_us)
            table.add_row(str(item.id), item.camera, format_local(item.start_us), end_text, item.kind,
                          f"{item.score:.2f}", _labels_text(item),
                          f"{item.label_score:.2f}" if item.label_score is not None else "",
                          "yes" if item.locked else "")
        else:
            table.add_row(item.camera, format_local(item.start_us), format_local(item.end_us),
                          f"{(item.end_us - item.start_us) / 1e6:.1f}", str(item.frames),
                          f"{item.bytes / 1e6:.2f}", item.node)
    Console().print(table)
    return 0


def _labels_text(event: Event) -> str:
    """The best label first, then the others with how many were seen at once when more than one."""
    if not event.labels:
        return event.label or ""
    order = sorted(event.labels, key=lambda k: (k != event.label, k))
    return ", ".join(k if event.labels[k] == 1 else f"{k} ×{event.labels[k]}" for k in order)


def _public(item: Segment | Event) -> dict[str, Any]:
    out: dict[str, Any] = {"camera": item.camera, "start": iso_utc(item.start_us), "end": iso_utc(item.end_us),
                           "start_us": item.start_us, "end_us": item.end_us}
    if isinstance(item, Event):
        out.update(id=item.id, kind=item.kind, score=item.score, bbox=list(item.bbox) if item.bbox else None,
                   locked=item.locked, open=item.open, label=item.label, label_score=item.label_score,
                   label_box=list(item.label_box) if item.label_box else None, labels=item.labels,
                   snapshot=item.snapshot)
    else:
        out.update(frames=item.frames, bytes=item.bytes, node=item.node, sha256=item.sha256)
    return out


async def _export(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    start, end = _range(args)
    out = Path(args.output)
    part = out.with_name(out.name + ".part")
    with part.open("wb") as f, Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                                        TransferSpeedColumn(), transient=True) as bar:
        task = bar.add_task(f"export {args.camera}", total=None)
        async with client(args) as store:
            result = ExportResult.from_json(await store.call(
                "export", camera=args.camera, from_us=start, to_us=end, on_chunk=lambda data: f.write(data),
                on_progress=lambda done, total: bar.update(task, completed=done, total=total)))
    part.replace(out)
    print(f"wrote {out}: {result.bytes / 1e6:.1f} MB, {result.frames} frames from {result.segments} "
          f"segments, {iso_utc(result.start_us)} → {iso_utc(result.end_us)}")
    return 0


async def _thumb(args: argparse.Namespace) -> int:
    at = parse_time(args.at)
    chunks: list[bytes] = []
    async with client(args) as store:
        result = Thumbnail.from_json(await store.call("thumbnail", camera=args.camera, at_us=at, width=args.width,
                                                      on_chunk=chunks.append))
    Path(args.output).write_bytes(b"".join(chunks))
    print(f"wrote {args.output}: {result.width}x{result.height} JPEG of the frame at {iso_utc(result.frame_us)}")
    return 0


async def _snapshot(args: argparse.Namespace) -> int:
    async with client(args) as store:
        result, jpeg = await store.snapshot(args.event)
    Path(args.output).write_bytes(jpeg)
    print(f"wrote {args.output}: {result.width}x{result.height} JPEG of event {args.event}'s frame at "
          f"{iso_utc(result.frame_us)}")
    return 0


def _pushed(result: dict) -> str:
    """Where a changed setting went: ``via_store`` is the other store of a shared index holding the node's link."""
    node, via = result["node"], result.get("via_store")
    if result["pushed"]:
        return f"pushed to {node}" + (f" by store {via}, which holds its link" if via else "")
    if via:
        return f"saved; {node}'s link is on store {via}, which has not confirmed sending it yet"
    return "node not connected; it gets it on reconnect"


async def _settings(args: argparse.Namespace) -> int:
    async with client(args) as store:
        if args.assignment:
            store_wide = all(a.partition("=")[0] in STORE_SETTINGS for a in args.assignment)
            if not args.camera and not store_wide:
                raise StoreError("bad-param", "changing a camera's settings needs --camera (store-wide settings: "
                                 f"{', '.join(STORE_SETTINGS)})", "camera")
            for assignment in args.assignment:
                key, sep, value = assignment.partition("=")
                if not sep:
                    raise StoreError("bad-param", f"{assignment!r} is not KEY=VALUE", "assignment")
                try:
                    parsed = value_from_text(key, value)
                except SettingError as exc:
                    raise StoreError("bad-setting", str(exc), "value") from None
                if key in STORE_SETTINGS and not args.camera:
                    r = await store.call("set_setting", key=key, value=parsed, by=args.by)
                    print(f"store-wide: {key} {json.dumps(r['old'])} → {json.dumps(r['new'])}")
                    continue
                r = await store.call("set_setting", camera=args.camera, key=key, value=parsed, by=args.by)
                state = _pushed(r)
                print(f"{args.camera}: {key} {json.dumps(r['old'])} → {json.dumps(r['new'])} ({state})")
            return 0
        if args.history:
            params = {"camera": args.camera} if args.camera else {}
            rows = (await store.call("settings_history", **params))["items"]
            if args.json:
                print(json.dumps(rows, indent=1))
            for h in rows if not args.json else []:
                print(f"{format_local(h['changed_us'])}  {h['camera']}  {h['key']}: {json.dumps(h['old'])} → "
                      f"{json.dumps(h['new'])}  by {h['changed_by']}")
            return 0
        params = {"camera": args.camera} if args.camera else {}
        answer = await store.call("settings", **params)
        current, store_wide = answer["settings"], answer.get("store")  # no "store" from an older store
    if args.json:
        print(json.dumps(current if store_wide is None else {**current, "*": store_wide}, indent=1))
    for cam, values in current.items() if not args.json else []:
        print(cam + ": " + ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items()))
    if store_wide and not args.json:
        print("store-wide: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in store_wide.items()))
    return 0
