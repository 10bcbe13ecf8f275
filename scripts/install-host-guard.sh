#!/usr/bin/env bash
# Installs (idempotently) the host guard of the tenant network fence: packets that tenant
# bridges (tcct*, see core/runtimes/fence.py) start towards the host itself are dropped;
# replies to connections the host opens still pass. The Docker driver does this by itself
# when it runs as root on the engine host; run this where it does not (e.g. a worker in a
# container) and set TCC_RUNTIME_HOST_GUARD=false for the worker.
set -euo pipefail
chain=TCC-TENANT-INPUT
if iptables -w -C INPUT -i tcct+ -j "$chain" 2>/dev/null; then
  echo "host guard already installed"
  exit 0
fi
iptables -w -N "$chain" 2>/dev/null || true
iptables -w -F "$chain"
iptables -w -A "$chain" -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -w -A "$chain" -j DROP
iptables -w -I INPUT 1 -i tcct+ -j "$chain"
echo "host guard installed"
