# SHT CCTV tasks. `python3 -m pip install -e '.[dev]'` first; it also installs `just`.

engine := env_var_or_default("SHT_ENGINE", "podman")  # `just image`, `just compose-up`: podman or docker

default:
    @just --list

# store + 3 nodes x 2 simulated cameras + the fleet view
demo *ARGS:
    python3 -m sht demo {{ARGS}}

# two stores sharing a throwaway PostgreSQL + SeaweedFS, 3 nodes given both, the console (needs postgresql, .[cluster])
demo-cluster *ARGS:
    python3 -m sht demo --cluster {{ARGS}}

# the whole test suite (what CI runs)
test *ARGS:
    python3 -m pytest {{ARGS}}

# run a benchmark; prints a table and writes docs/benchmarks.md. `just bench` is the
# six-camera system benchmark (bench/run.py); `just bench motion` the detectors (bench/motion.py); `just bench store` the store (bench/store.py);
# `just bench abuse` the attacks of issue 14 against a store with a node recording (bench/abuse.py)
# `just bench notify` event start → MQTT `new` and → signed webhook received, p50/p99 over 100 events, through a real Mosquitto, store and node (bench/notify.py; ~3 min; `--quick` 10 events)
# `just bench objects` the person detector on OpenCV's sample videos, frame by frame and as events through a real store and node (bench/objects.py; needs `apt-get install opencv-doc`; `--minutes N` per device)
# `just bench cluster` one store's ingest capacity (segments/s, cameras' worth) against the disk's fsync-per-file limit, on sqlite+file, sqlite+S3, postgresql+S3, two sqlite+file stores side by side and two postgresql+S3 stores side by side on one index and bucket (bench/cluster.py; ~5 min; `--quick` a smoke run)
# `just bench cluster-queries` search/timeline/thumbnail p50/p99 on postgresql+S3 (and sqlite+S3, postgresql+file) against sqlite+file on one 30-day 100-camera index (bench/cluster_queries.py; ~11 min; `--quick` a smoke run)
# `just bench container` the image of deploy/Containerfile: size, build time, podman run → /health (bench/container.py; ~3 min; needs podman, mmdebstrap, runc)
# `just bench cluster-failover` two stores on one PostgreSQL index and bucket, 3 nodes with --store A,B, their store SIGKILLed 10 times: time to the other store, coverage gaps, duplicates, losses (bench/cluster_failover.py; ~1 min; `--quick` a smoke run)
# `just bench console-playback` the console's CPU (% of one core) playing recorded footage at 1x and 8x, and pictures shown a second, medians over 3 runs with the load average (bench/console_playback.py; ~2 min)
# `just bench recordings` /recordings time to first byte (10 min, 1 h, 24 h ranges: cold, older index without shapes, repeat), the whole head's time and the 10 min MP4 throughput through a real store (bench/recordings.py; ~2 min; `--quick` a smoke run)
# `just bench review` the store page's Review view in Chromium: click on a timeline → first recorded frame painted, p50/p99 over 30 clicks on 6 cameras × 30 days (bench/review.py; ~1 min; `--quick` a smoke run)
bench *ARGS:
    python3 -m bench {{ARGS}}

lint:
    python3 -m ruff check .
    python3 -m mypy shared node store console sht bench

# one node with two simulated cameras, recording to a local store
node *ARGS:
    python3 -m sht node --id node0 --camera cam0=synthetic --camera cam1=synthetic --store ws://127.0.0.1:8100 {{ARGS}}

store *ARGS:
    python3 -m sht store {{ARGS}}

console *ARGS:
    python3 -m sht console {{ARGS}}

# the MQTT broker killed for OUTAGE s while events happen, the store restarted meanwhile: every change delivered after, in order (tests/system/test_mqtt.py; the suite uses 10 s)
mqtt-outage OUTAGE="30":
    SHT_MQTT_OUTAGE_S={{OUTAGE}} python3 -m pytest -q tests/system/test_mqtt.py -k broker_away

# the six-camera demo under random store and node kills; accounting per camera
soak MINUTES="10" *ARGS:
    python3 -m bench.soak {{MINUTES}} {{ARGS}}

# a store's PostgreSQL and S3 endpoint each stopped for OUTAGE s under a recording node (tests/system/test_cluster_outages.py; the suite uses 10 s)
fault-cluster OUTAGE="60" *ARGS:
    SHT_FAULT_OUTAGE_S={{OUTAGE}} python3 -m pytest -q -s tests/system/test_cluster_outages.py {{ARGS}}

# the container image that runs every role (deploy/Containerfile, docs/deploy.md); SHT_ENGINE=docker to build with
# Docker. Stores on PostgreSQL/S3: `just image localhost/sht-cctv:cluster --build-arg SHT_EXTRAS=cluster,mqtt`
image TAG="localhost/sht-cctv:latest" *ARGS:
    {{engine}} build {{ if engine == "podman" { "--format docker" } else { "" } }} -f deploy/Containerfile -t {{TAG}} {{ARGS}} .

# wheels for every dependency into deploy/wheelhouse/, so `just image` needs no registry (tools/image_wheels.py)
image-wheels EXTRAS="mqtt":
    python3 tools/image_wheels.py --extras {{EXTRAS}} deploy/wheelhouse

# deploy/compose.yaml up: the store, three simulated nodes, a relay; `just compose-up --profile cluster` adds the
# cluster (docker compose, or podman-compose >= 1.1 from pip). Makes deploy/compose.env with random secrets if missing
compose-up *ARGS:
    @[ -e deploy/compose.env ] || (umask 077 && python3 -c "import re, secrets, sys; sys.stdout.write(re.sub('change-me', lambda m: secrets.token_hex(16), open('deploy/compose.env.example').read()))" > deploy/compose.env && echo "made deploy/compose.env")
    {{ if engine == "docker" { "docker compose" } else { "podman-compose" } }} -f deploy/compose.yaml {{ARGS}} up -d

# deploy/compose.yaml down, the nodes first so they upload their last segment (volumes kept: -v removes them, footage too)
compose-down *ARGS:
    -{{ if engine == "docker" { "docker compose" } else { "podman-compose" } }} -f deploy/compose.yaml --profile cluster stop node1 node2 node3 cnode1 cnode2 cnode3
    {{ if engine == "docker" { "docker compose" } else { "podman-compose" } }} -f deploy/compose.yaml --profile cluster down {{ARGS}}

# install the node as a systemd service on this machine (a Pi): /opt/sht/venv, /etc/sht/node.{json,env}
install-node:
    bash deploy/install.sh node  # as root: sudo just install-node

# install the store as a systemd service on this machine (the NAS): data in /srv/sht
install-store:
    bash deploy/install.sh store  # as root: sudo just install-store
