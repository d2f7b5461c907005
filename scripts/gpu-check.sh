#!/usr/bin/env bash
# The GPU host check: on a machine with a real GPU, in a few minutes (after the build),
#   1. lists the adapters,
#   2. runs `bench --backend gpu --sweep` (every dispatch configuration, the best marked),
#   3. solves the real Bitcoin genesis header on the GPU (nonce 2083236893),
#   4. mines 20 blocks on a local dev node through its Stratum server,
# and writes one JSON summary (stdout and $OUT/summary.json). Exit status 0 only if all
# four passed.
#
# Environment (all optional):
#   GPU_CHECK_ADAPTER   --adapter for every step, e.g. "llvmpipe" to run it on Mesa's
#                       software Vulkan (then also set the two below: it is ~100x slower)
#   GPU_CHECK_BLOCKS    blocks to mine through Stratum (default 20)
#   GPU_CHECK_GENESIS_COUNT  nonces searched, centred on the genesis nonce (default the
#                       whole 2^32 space from 0)
#   GPU_CHECK_SWEEP_SECONDS  total measuring time of the sweep (default 24)
#   BITPLACE_BIN        directory holding bitplace-miner and bitplace-node (default: build
#                       them with `cargo build --release`)
#   OUT                 where logs and summary.json go (default target/gpu-check)
set -euo pipefail
cd "$(dirname "$0")/.."

BLOCKS=${GPU_CHECK_BLOCKS:-20}
SWEEP_SECONDS=${GPU_CHECK_SWEEP_SECONDS:-24}
GENESIS_COUNT=${GPU_CHECK_GENESIS_COUNT:-4294967296}
ADAPTER=${GPU_CHECK_ADAPTER:-}
OUT=${OUT:-target/gpu-check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ -z "${BITPLACE_BIN:-}" ]; then
  cargo build --release -p bitplace-miner-gpu -p bitplace-api --bins >&2
  BITPLACE_BIN="${CARGO_TARGET_DIR:-target}/release"
fi
miner="$BITPLACE_BIN/bitplace-miner"
node="$BITPLACE_BIN/bitplace-node"
adapter_args=()
[ -n "$ADAPTER" ] && adapter_args=(--adapter "$ADAPTER")

t_start=$(date +%s)
elapsed() { echo $(( $(date +%s) - t_start )); }
step() { echo "gpu-check: $* ($(elapsed) s)" >&2; }

# 1. Adapters.
step "adapters"
"$miner" adapters --json > "$OUT/adapters.jsonl" 2> "$OUT/adapters.stderr" || true
cat "$OUT/adapters.jsonl" >&2

# 2. The dispatch sweep.
step "bench --backend gpu --sweep (${SWEEP_SECONDS} s of measuring per adapter)"
sweep_ok=true
"$miner" bench --backend gpu --sweep --seconds "$SWEEP_SECONDS" "${adapter_args[@]}" \
  > "$OUT/sweep.jsonl" 2> "$OUT/sweep.stderr" || sweep_ok=false

# 3. Bitcoin's genesis header on the GPU.
genesis_header=0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d00000000
genesis_target=00000000ffff0000000000000000000000000000000000000000000000000000
genesis_nonce=2083236893
if [ "$GENESIS_COUNT" -ge 4294967296 ]; then
  genesis_start=0
  GENESIS_COUNT=4294967296
else
  genesis_start=$(( genesis_nonce - GENESIS_COUNT / 2 ))
fi
step "genesis search: $GENESIS_COUNT nonces from $genesis_start"
g0=$(date +%s.%N)
genesis_ok=true
"$miner" search --backend gpu "${adapter_args[@]}" --header "$genesis_header" \
  --target "$genesis_target" --start "$genesis_start" --count "$GENESIS_COUNT" \
  > "$OUT/genesis.txt" 2> "$OUT/genesis.stderr" || genesis_ok=false
g1=$(date +%s.%N)
grep -qx "$genesis_nonce 000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f" \
  "$OUT/genesis.txt" || genesis_ok=false

# 4. Twenty blocks through the dev node's Stratum server.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
stratum_port=$(free_port)
data=$(mktemp -d)
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT
step "dev node with --stratum 127.0.0.1:$stratum_port"
"$node" --dev --data-dir "$data/node" --listen "127.0.0.1:$http_port" \
  --stratum "127.0.0.1:$stratum_port" 2> "$OUT/node.log" &
node_pid=$!
http_get() {
  python3 - "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.stdout.write(r.read().decode())
EOF
}
for _ in $(seq 1 200); do
  if http_get "http://127.0.0.1:$http_port/healthz" >/dev/null 2>&1 \
     && (exec 3<>"/dev/tcp/127.0.0.1/$stratum_port") 2>/dev/null; then
    break
  fi
  sleep 0.1
done
# A payout address from the dev node's wallet route (dev mode only).
address=$(http_get "http://127.0.0.1:$http_port/wallet/new" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["address"])')
step "mining $BLOCKS blocks through Stratum as $address"
s0=$(date +%s.%N)
stratum_ok=true
timeout 600 "$miner" --pool "stratum+tcp://127.0.0.1:$stratum_port" --user "$address.gpucheck" \
  --backend gpu "${adapter_args[@]}" --blocks "$BLOCKS" --json \
  > "$OUT/stratum.jsonl" 2> "$OUT/stratum.stderr" || stratum_ok=false
s1=$(date +%s.%N)
http_get "http://127.0.0.1:$http_port/v1/status" > "$OUT/status.json" || true
http_get "http://127.0.0.1:$http_port/v1/addresses/$address" > "$OUT/address.json" || true

step "summary"
python3 - "$OUT" "$BLOCKS" "$sweep_ok" "$genesis_ok" "$stratum_ok" "$g0" "$g1" "$s0" "$s1" \
  "$GENESIS_COUNT" "$(elapsed)" <<'EOF' | tee "$OUT/summary.json"
import json, sys
out, blocks = sys.argv[1], int(sys.argv[2])
sweep_ok, genesis_ok, stratum_ok = (a == "true" for a in sys.argv[3:6])
g0, g1, s0, s1 = map(float, sys.argv[6:10])
genesis_count, elapsed = int(sys.argv[10]), int(sys.argv[11])

def lines(name):
    try:
        with open(f"{out}/{name}") as f:
            return [json.loads(l) for l in f if l.strip().startswith("{")]
    except (OSError, ValueError):
        return []

def load(name):
    try:
        with open(f"{out}/{name}") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}

adapters = lines("adapters.jsonl")
sweep = lines("sweep.jsonl")
best = {}
for row in sweep:
    if row.get("best"):
        best[row["adapter"]] = {
            "dispatch": f'{row["nonces_per_invocation"]}x{row["workgroup_size"]}',
            "gh_per_second": round(row["hashes_per_second"] / 1e9, 3),
        }
events = lines("stratum.jsonl")
done = next((e for e in events if e.get("type") == "done"), {})
rates = [e["hashes_per_second"] for e in events if e.get("type") == "status"]
status, addr = load("status.json"), load("address.json")
earned = addr.get("confirmed", 0) + addr.get("immature", 0)
stratum_ok = stratum_ok and done.get("blocks") == blocks and status.get("height", 0) >= blocks
genesis_seconds = g1 - g0
summary = {
    "adapters": [{k: a.get(k) for k in ("index", "name", "backend", "device_type")} for a in adapters],
    "hardware_adapters": sum(1 for a in adapters if a.get("device_type") != "Cpu"),
    "sweep": {"ok": sweep_ok and bool(sweep), "rows": len(sweep), "best": best},
    "genesis": {
        "ok": genesis_ok,
        "nonces": genesis_count,
        "seconds": round(genesis_seconds, 2),
        "gh_per_second": round(genesis_count / genesis_seconds / 1e9, 3) if genesis_seconds > 0 else None,
    },
    "stratum": {
        "ok": stratum_ok,
        "blocks": done.get("blocks"),
        "accepted": done.get("accepted"),
        "rejected": done.get("rejected"),
        "stale": done.get("stale"),
        "node_height": status.get("height"),
        "earned": earned,
        "seconds": round(s1 - s0, 1),
        "peak_gh_per_second": round(max(rates) / 1e9, 3) if rates else None,
    },
    "seconds": elapsed,
}
summary["ok"] = summary["sweep"]["ok"] and genesis_ok and stratum_ok
print(json.dumps(summary))
sys.exit(0 if summary["ok"] else 1)
EOF
