"""What a bot's bundle lookup costs once its organization has custom bundles.

Every deploy, switch and bot page builds the catalog a bot sees: the shipped bundles
plus its organization's published versions, parsed from the database
(``core.bundles.custom.catalog_for_org``). This publishes N versions for one
organization in a fresh SQLite database and times that lookup.

    .venv/bin/python bench/custom_catalog.py [--versions 1 10 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from core.bundles.catalog import load_catalog
from core.bundles.custom import catalog_for_org, publish
from core.db import Database, run_migrations
from core.db.models import Organization

MANIFEST = """id = "desk"
version = "{version}"
name = "Desk"
plans = ["business"]
schema_version = 1

[agents.helper]
name = "Helper"
prompt_template = "agents/helper.md"

[prompts]
heartbeat = "heartbeat.md"
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    shipped = load_catalog()
    for count in args.versions:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            run_migrations(url)
            db = Database(url)
            with db.system_session() as session:
                org = Organization(name="Bench")
                session.add(org)
                session.flush()
                org_id = org.id
                start = time.perf_counter()
                for n in range(count):
                    files = {
                        "bundle.toml": MANIFEST.format(version=f"1.{n}.0"),
                        "agents/helper.md": "# {{ agent.name }} of {{ tenant_name }}\n",
                        "heartbeat.md": "Reply OK.\n",
                    }
                    publish(session, shipped, org_id, files, "bench")
                publish_ms = (time.perf_counter() - start) * 1000 / count
            timings = []
            for _ in range(args.runs):
                start = time.perf_counter()
                with db.system_session() as session:
                    catalog_for_org(session, shipped, org_id)
                timings.append((time.perf_counter() - start) * 1000)
            db.dispose()
            timings.sort()
            print(
                f"{count:>3} versions: lookup median {statistics.median(timings):.2f} ms, "
                f"p95 {timings[int(len(timings) * 0.95) - 1]:.2f} ms; "
                f"publish (validate + render + store) {publish_ms:.1f} ms each"
            )


if __name__ == "__main__":
    main()
