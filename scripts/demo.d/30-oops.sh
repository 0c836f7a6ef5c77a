# Sourced by scripts/demo (lab variables and helpers come from there).
say "rawpoll oops -> rawpoll collect in $B: a 20 KB log as netoops v3, 3 rounds, newest chunk first"
mkdir -p "$work/oops"
ip netns exec "$B" node bin/rawpoll.js collect --dir "$work/oops" --oops 2004 --idle 3 > "$work/oops.out" 2>&1 & pids+=($!)
sleep 0.8
for i in $(seq 1 600); do printf '<4>[%5d.%06d] demo: oops line %d\n' "$i" "$((i * 997 % 1000000))" "$i"; done > "$work/oops-in.log"
truncate -s 20000 "$work/oops-in.log"   # (not `| head -c`: under pipefail its SIGPIPE would end the demo)
rawpoll oops -i "$IFA" --to "$IPB" --log "$work/oops-in.log" --type oops --gap-us 100 --board "demo board" --firmware "demo fw"
sleep 0.8
echo "-- collector events:"; sed 's/^/   | /' "$work/oops.out"
f=$(ls "$work"/oops/oops-*.log | head -1)
if cmp -s "$f" "$work/oops-in.log"; then echo "-- $(basename "$f") is byte-identical to the log sent"; else echo "-- $(basename "$f") DIFFERS from the log sent"; fi
echo "-- its sidecar (header fields):"; sed -n '1,16p' "${f%.log}.json" | sed 's/^/   | /'
