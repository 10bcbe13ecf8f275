"""What the container fence costs per tenant: ensure() time and the egress proxy's memory.

Usage: python -m bench.fence_overhead [IMAGE]   (root on a Docker host; the image must
contain runtime.egress, e.g. built by scripts/build-runtime-image.sh)
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid

import docker

from core.runtimes.base import RuntimeSpec
from core.runtimes.docker import DockerDriver
from core.runtimes.fence import egress_name
from tests.runtime.harness import home_files


def main() -> int:
    """Deploy a few tenants, print ensure() timings and the proxies' memory, clean up."""
    image = sys.argv[1] if len(sys.argv) > 1 else "tinyclaw/runtime:dev"
    client = docker.from_env()
    driver = DockerDriver(client, fence_image=image)
    tenants, first, again = [], [], []
    try:
        for _ in range(3):
            tenant = f"bench-fence-{uuid.uuid4().hex[:8]}"
            tenants.append(tenant)
            spec = RuntimeSpec(
                tenant_id=tenant,
                deployment_id="bench",
                image=image,
                env={"RUNTIME_API_TOKEN": "bench-token", "TELEGRAM_BOT_TOKEN": "1:bench"},
                files=home_files(),
            )
            started = time.perf_counter()
            driver.ensure(spec)
            first.append(time.perf_counter() - started)
            started = time.perf_counter()
            driver.ensure(spec)
            again.append(time.perf_counter() - started)
        time.sleep(2)
        memory = [
            client.containers.get(egress_name(t)).stats(stream=False)["memory_stats"]["usage"]
            for t in tenants
        ]
        print(f"ensure() first time: median {statistics.median(first) * 1000:.0f} ms")
        print(f"ensure() again:      median {statistics.median(again) * 1000:.0f} ms")
        print(f"egress proxy memory: median {statistics.median(memory) / 2**20:.1f} MiB")
    finally:
        for tenant in tenants:
            driver.remove(tenant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
