"""``sht``: subcommands dispatch lazily, so ``sht node`` on a Pi never imports Textual
and ``sht console`` never loads the encoder."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _fail(message: str) -> int:
    print(f"sht: error: {message}", file=sys.stderr)
    return 2


def add_listener_security(p: argparse.ArgumentParser) -> None:
    """Flags every server takes: authentication, TLS and allowlists."""
    p.add_argument("--no-auth", action="store_true",
                   help="accept every connection without a token (only on a network you fully trust)")
    p.add_argument("--tls-cert", help="serve TLS with this certificate chain (PEM)")
    p.add_argument("--tls-key", help="the certificate's private key (PEM)")
    p.add_argument("--tls-min", default="1.3", choices=("1.2", "1.3"), help="oldest TLS version (default 1.3)")
    p.add_argument("--allow", action="append", default=[], metavar="ROLE=CIDR[,CIDR]",
                   help="only these addresses may use ROLE (node, viewer, admin, detector); repeat per role")
    p.add_argument("--closed-health", action="store_true", help="require a token for /health and /metrics too")


def security_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from shared.security import SecurityOptions

    options = SecurityOptions(auth=not args.no_auth, allow=tuple(args.allow), tls_cert=args.tls_cert,
                              tls_key=args.tls_key, tls_min=args.tls_min, open_health=not args.closed_health,
                              key_file=getattr(args, "key_file", None))  # only the store has --key-file
    options.validate()
    return options


def add_node_ca(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node-ca", metavar="FILE", help="CA certificate to verify nodes that serve TLS (--tls-cert) "
                   "when relaying their live streams (default: the system's CAs)")


def check_node_ca(path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise ValueError(f"--node-ca {path} does not exist; give the PEM file of the CA that signed the nodes' "
                         "certificates")


def cmd_node(args: argparse.Namespace) -> int:
    if args.probe:  # what the machine has: cameras, working encoders, health sources
        from node.capture.probe import print_probe, probe_machine

        print_probe(probe_machine(), as_json=args.json)
        return 0
    from shared.config import (
        CameraConfig,
        NodeConfig,
        load_node_config,
        parse_camera_flag,
        parse_size,
        with_overrides,
    )
    from shared.fields import FieldError
    from shared.ids import InvalidId, check_id

    try:
        base = load_node_config(args.config) if args.config else NodeConfig(id=check_id(args.id or "node0", "node id"))
        width = height = None
        if args.size:
            width, height = parse_size(args.size, "--size")
        cameras = {c.id: c for c in base.cameras}
        for flag in args.camera or []:
            cam_id, source = parse_camera_flag(flag)
            cameras[cam_id] = CameraConfig(id=cam_id, source=source)
        from dataclasses import replace

        motion = {"off": False, None: None}.get(args.motion, {"detector": args.motion})
        substream = parse_size(args.substream, "--substream") if args.substream else None
        cams = tuple(
            replace(c, width=width or c.width, height=height or c.height, fps=args.fps or c.fps,
                    motion=c.motion if args.motion is None else motion, substream=substream or c.substream)
            for c in cameras.values()
        )
        for c in cams:
            if c.substream and (c.substream[0] >= c.width or c.substream[1] >= c.height):
                raise ValueError(f"camera {c.id}: the substream {c.substream[0]}x{c.substream[1]} must be smaller "
                                 f"than {c.width}x{c.height}")
        from shared.timespec import TimeSpecError
        from shared.timespec import parse_size as parse_bytes

        try:
            spool_max_bytes = parse_bytes(args.spool_max_bytes) if args.spool_max_bytes else None
        except TimeSpecError as exc:
            raise ValueError(f"--spool-max-bytes: {exc}") from None
        config = with_overrides(
            base, id=check_id(args.id, "node id") if args.id else None, port=args.port,
            host=args.host, store_url=args.store, segment_seconds=args.segment_seconds,
            spool_dir=args.spool, cameras=cams, spool_max_bytes=spool_max_bytes,
            spool_max_minutes=args.spool_max_minutes,
        )
        if config.store_url:  # one store or several, comma-separated: checked and tidied here, not at connect time
            from shared.store_list import joined, parse_store_list

            config = replace(config, store_url=joined(parse_store_list(config.store_url)))
    except (FieldError, InvalidId, ValueError) as exc:
        return _fail(str(exc))
    if not config.cameras:
        return _fail("no cameras: give --camera ID=SOURCE (e.g. --camera cam0=synthetic) or a --config file")
    if not 1 <= config.segment_seconds <= 600:
        return _fail(f"--segment-seconds must be between 1 and 600, got {config.segment_seconds}")
    try:
        from node.app import NodeSecurity

        security = NodeSecurity(security_from_args(args), args.token or None, args.store_key, args.ca)
    except ValueError as exc:
        return _fail(str(exc))
    if config.store_url and not security.token and security.listen.auth:
        return _fail("the store needs a node token: give --token or set SHT_TOKEN (make one on the store with "
                     "`sht token create --root DIR --role node --subject NODE_ID`)")
    _setup_logging(args.log_level)
    from node.app import run_node
    from node.sources import SourceError

    try:
        asyncio.run(run_node(config, security))
    except (SourceError, FieldError) as exc:  # a scenario or motion config read at start
        return _fail(str(exc))
    except ValueError as exc:  # e.g. a motion zone the detector cannot use
        return _fail(f"node {config.id}: {exc}")
    except OSError as exc:
        return _fail(f"node {config.id}: {exc}")
    return 0


def add_detect_flags(store: argparse.ArgumentParser) -> None:
    group = store.add_argument_group("object detection (docs/objects.md)")
    group.add_argument("--detect", choices=("off", "local"), default="local",
                       help="local (default): the store runs the person detector on frames of cameras while a motion "
                       "event is open; `sht detect --store URL` workers take the work over while connected. off: none")
    from sht.detect_cli import add_model_flags

    add_model_flags(group, prefix="detect-")  # the store's own detector: the flags of `sht detect`, prefixed
    group.add_argument("--detect-fps", type=float, default=5.0, help="frames a second analysed per camera while a "
                       "motion event is open (default 5)")


def detect_options_from_args(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from store.detect.service import DetectOptions

    if not 0.2 <= args.detect_fps <= 30:
        raise ValueError(f"--detect-fps must be between 0.2 and 30, got {args.detect_fps}")
    if args.detect_threads < 1:
        raise ValueError(f"--detect-threads must be 1 or more, got {args.detect_threads}")
    return DetectOptions(args.detect, args.detect_fps, args.detect_model, args.detect_labels, args.detect_device,
                         args.detect_threads)


def cmd_store(args: argparse.Namespace) -> int:
    from store.admin.commands import media_limits_from_args, policy_from_args
    from store.index.location import index_from_args
    from store.notify.options import notify_from_args
    from store.replica.cli import replica_from_args
    from store.segments.options import segments_from_args

    try:
        policy = policy_from_args(args)
        media = media_limits_from_args(args)
        security = security_from_args(args)
        check_node_ca(args.node_ca)
        detect = detect_options_from_args(args)
        segments = segments_from_args(args)  # --segments: files (default) or S3
        index = index_from_args(args)  # --index: SQLite (default) or PostgreSQL
        replica = replica_from_args(args)  # --replica: the off-site copy (none by default)
        notify = notify_from_args(args)  # --webhook (and --mqtt): docs/integrations.md
    except ValueError as exc:
        return _fail(str(exc))
    _setup_logging(args.log_level)
    from shared.detect.result import DetectorError
    from store.app import run_store

    try:
        asyncio.run(run_store(Path(args.root), args.host, args.port, policy, security, args.node_ca, media, detect,
                              segments, index, replica, notify))
    except OSError as exc:  # a port in use; SegmentStoreError: the S3 endpoint down, no bucket, bad credentials;
        # IndexUnavailable: PostgreSQL down or refusing
        return _fail(f"store: {exc}")
    except DetectorError as exc:
        return _fail(f"store: object detection cannot start: {exc} (or run with --detect off)")
    return 0


def cmd_relay(args: argparse.Namespace) -> int:
    from shared.store_list import parse_store_list

    try:
        security = security_from_args(args)
        check_node_ca(args.node_ca)
        parse_store_list(args.store)
    except ValueError as exc:
        return _fail(str(exc))
    if security.auth and not args.token:
        return _fail("the relay needs a viewer token for the store and the nodes: give --token or set SHT_TOKEN")
    _setup_logging(args.log_level)
    from store.live.relay_app import run_relay

    try:
        asyncio.run(run_relay(args.store, args.host, args.port, args.token, security, args.ca, args.node_ca))
    except OSError as exc:
        return _fail(f"relay: {exc}")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    from shared.store_list import StoreListError, parse_store_list

    try:
        parse_store_list(args.store)
    except StoreListError as exc:
        return _fail(str(exc))
    from console.app import run_console

    return run_console(args.store, token=args.token, ca=args.ca)


def cmd_demo(args: argparse.Namespace) -> int:
    from sht.demo import DemoOptions, run_demo

    opts = DemoOptions(
        base_port=args.base_port, root=Path(args.root), headless=args.headless,
        duration=args.duration, segment_seconds=args.segment_seconds, size=args.size,
        fps=args.fps, summary_json=Path(args.summary_json) if args.summary_json else None, motion=args.motion,
        cluster=args.cluster,
    )
    return run_demo(opts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sht", description="SHT CCTV: camera nodes, a store, a console.")
    sub = parser.add_subparsers(dest="command", required=True)

    node = sub.add_parser("node", help="run a camera node")
    node.add_argument("--id", help="node id, e.g. node0")
    node.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    node.add_argument("--port", type=int, help="port for /live and /health (default 8000)")
    node.add_argument("--store", help="store URL, e.g. ws://nas:8100; or several, comma-separated "
                      "(ws://nas1:8100,ws://nas2:8100): the first that answers, the next when it fails")
    node.add_argument("--camera", action="append", metavar="ID=SOURCE",
                      help="a camera: SOURCE is synthetic[:SCENARIO][?seed=N&phase=S], file:PATH[?loop=1], "
                      "url:rtsp://..., v4l2:/dev/videoN or picamera2[:N]; repeat for more")
    node.add_argument("--segment-seconds", type=float, help="segment length, 1..600 (default 10)")
    node.add_argument("--spool", help="local spool directory (default ./sht-spool/ID)")
    node.add_argument("--spool-max-bytes", metavar="SIZE", help="spool limit, e.g. 2G (wins over minutes)")
    node.add_argument("--spool-max-minutes", type=float, help="spool limit in minutes of all cameras at their "
                      "bitrate cap (default 30)")
    node.add_argument("--size", help="frame size for every camera, e.g. 1280x720")
    node.add_argument("--fps", type=int, help="frame rate for every camera")
    node.add_argument("--config", help="JSON config file; flags override it")
    node.add_argument("--substream", metavar="WxH", help="a second, smaller encode per camera (e.g. 640x360) "
                      "for tiles and viewers that fall behind (/live/CAM?stream=sub|auto)")
    node.add_argument("--motion", choices=("luma", "vectors", "off"),
                      help="motion detector for every camera (default: each camera's config, else luma)")
    node.add_argument("--token", default=os.environ.get("SHT_TOKEN"), help="node token for the store "
                      "(default $SHT_TOKEN)")
    node.add_argument("--store-key", help="the store's public key (ROOT/keys/signing.pub); default: fetched "
                      "from the store and cached in the spool")
    node.add_argument("--ca", help="CA certificate to verify a wss:// store with")
    add_listener_security(node)
    node.add_argument("--log-level", default="info")
    node.add_argument("--probe", action="store_true",
                      help="print the cameras, encoders that really work and health sources here, then exit")
    node.add_argument("--json", action="store_true", help="with --probe: print JSON instead of tables")
    node.set_defaults(func=cmd_node)

    store = sub.add_parser("store", help="run the store (NAS)")
    store.add_argument("--root", default="./sht-data", help="data directory (default ./sht-data)")
    store.add_argument("--host", default="0.0.0.0")
    store.add_argument("--port", type=int, default=8100)
    store.add_argument("--log-level", default="info")
    add_node_ca(store)
    add_listener_security(store)
    add_detect_flags(store)
    from sht.token_cli import add_key_file_flag

    add_key_file_flag(store)  # a PostgreSQL cluster's signing key kept out of its index
    from store.notify.options import add_webhook_flags

    add_webhook_flags(store)  # --webhook URL (docs/integrations.md)
    from store.notify.mqtt.options import add_mqtt_flags

    add_mqtt_flags(store)  # --mqtt URL, --mqtt-ca, --mqtt-discovery (argparse only: the client loads with --mqtt)
    store.set_defaults(func=cmd_store)
    from store.admin.commands import add_store_commands  # --max-age/--max-bytes/--min-free; prune, check, ...

    add_store_commands(store)

    relay = sub.add_parser("relay", help="a relay-only process: /live for many viewers, cameras found via a store")
    relay.add_argument("--store", required=True, help="the store's URL, e.g. http://nas:8100 (for fleet and key); "
                       "or several, comma-separated: the next is asked when one fails")
    relay.add_argument("--host", default="0.0.0.0")
    relay.add_argument("--port", type=int, default=8200)
    relay.add_argument("--token", default=os.environ.get("SHT_TOKEN"), help="viewer token for the store and the "
                       "nodes (default $SHT_TOKEN)")
    relay.add_argument("--ca", help="CA certificate to verify a wss:// store with")
    add_node_ca(relay)
    relay.add_argument("--log-level", default="info")
    add_listener_security(relay)
    relay.set_defaults(func=cmd_relay)

    console = sub.add_parser("console", help="the operator's console (fleet, live, events, search, settings)")
    from sht.query_cli import add_store_arg

    add_store_arg(console)  # --store (the console finds the nodes through it), --token, --ca
    console.set_defaults(func=cmd_console)

    demo = sub.add_parser("demo", help="store + 3 nodes x 2 simulated cameras on this machine")
    demo.add_argument("--base-port", type=int, default=8000, help="nodes on P..P+2, store on P+100")
    demo.add_argument("--root", default="./sht-demo", help="store root and node spools")
    demo.add_argument("--headless", action="store_true", help="no UI: run, print a summary, exit")
    demo.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--segment-seconds", type=float, default=10.0)
    demo.add_argument("--size", default="1280x720")
    demo.add_argument("--fps", type=int, default=15)
    demo.add_argument("--motion", choices=("luma", "vectors", "off"), help="motion detector on every camera "
                      "(default: luma)")
    demo.add_argument("--summary-json", help="also write the headless summary as JSON here")
    demo.add_argument("--cluster", action="store_true",
                      help="two stores (P+100, P+101) on a PostgreSQL index and a SeaweedFS bucket the demo starts "
                           "and removes; needs apt-get install postgresql and pip install 'sht-cctv[cluster]'")
    demo.set_defaults(func=cmd_demo)

    from sht import detect_cli, query_cli, token_cli, webhook_cli

    query_cli.add_parsers(sub)
    token_cli.add_parsers(sub)
    detect_cli.add_parsers(sub)
    webhook_cli.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
