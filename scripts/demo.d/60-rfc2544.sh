# Sourced by scripts/demo (lab variables and helpers come from there).
# A device whose truth we set: namespace M bridges a tester (T) and a sink (S) and shapes its port toward S with
# tbf rate 8 Mbit/s, burst 16 000 bytes, limit 32 000 bytes. RFC 2544 should find ~1953 frames/s of 512 bytes
# (8e6 / (8 x 512), tbf counts frames without FCS as blast sizes them) and a back-to-back burst of ~94 frames
# ((16000 + 32000) / 512).
T="${tag}t"; M="${tag}m"; S="${tag}s"; IFT="rpd$$t"; IFMT="rpd$$mt"; IFMS="rpd$$ms"; IFS_="rpd$$s"
NET2=10.251.$(( $$ % 250 )); IPT=$NET2.1; IPS=$NET2.2
cleanup_rfc2544() { for ns in "$T" "$M" "$S"; do ip netns del "$ns" 2>/dev/null || true; done; }
trap 'cleanup_rfc2544; cleanup' EXIT INT TERM

say "rawpoll rfc2544: throughput and back-to-back through a bridge shaped with tbf (8 Mbit/s, burst 16 000, limit 32 000 bytes), counted by rawpoll sink --serve"
for ns in "$T" "$M" "$S"; do
  ip netns add "$ns"; ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add "$IFT" netns "$T" type veth peer name "$IFMT" netns "$M"
ip link add "$IFMS" netns "$M" type veth peer name "$IFS_" netns "$S"
ip -n "$M" link add br0 type bridge
ip -n "$M" link set "$IFMT" master br0; ip -n "$M" link set "$IFMS" master br0
for l in "$IFMT" "$IFMS" br0; do ip -n "$M" link set "$l" up; done
tc -n "$M" qdisc add dev "$IFMS" root tbf rate 8mbit burst 16000 limit 32000
ip -n "$T" addr add "$IPT/24" dev "$IFT"; ip -n "$T" link set "$IFT" up
ip -n "$S" addr add "$IPS/24" dev "$IFS_"; ip -n "$S" link set "$IFS_" up
ip netns exec "$S" node bin/rawpoll.js sink --serve "$IPS:5201" > "$work/serve.out" 2>&1 & pids+=($!)
for _ in $(seq 100); do grep -q 'serving trials' "$work/serve.out" && break; sleep 0.1; done
# The kernel lists a link's addresses once it runs (operstate up, up to a second after the carrier).
for _ in $(seq 50); do [ "$(ip netns exec "$T" cat "/sys/class/net/$IFT/operstate")" = up ] && break; sleep 0.1; done
tester() { ip netns exec "$T" node bin/rawpoll.js rfc2544 "$@"; }
tester throughput -i "$IFT" --to "$IPS:9" --control "$IPS:5201" --sizes 512 --max-rate 4000pps --trial 1 --settle 0.3 \
  --resolution 5 --json > "$work/throughput.json"
pps=$(node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(r.throughput[0].ratePps)' "$work/throughput.json")
echo "throughput at 512 bytes: $pps frames/s (tbf's rate: 1953 frames/s)"
report="${RAWPOLL_DEMO_OUT:-/tmp}/rawpoll-demo-rfc2544-$$.html"
tester back-to-back -i "$IFT" --to "$IPS:9" --control "$IPS:5201" --sizes 512 --max-rate 40000pps --throughput "${pps}pps" \
  --max-burst 300 --repeat 2 --trial 1 --settle 0.3 --report "$report"
echo "(tbf's burst + limit hold (16000 + 32000) / 512 = 94 frames)"
echo "report with its plots (SVG in HTML, the run's JSON inside): $report"
