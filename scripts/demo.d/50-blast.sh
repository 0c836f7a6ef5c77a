# Sourced by scripts/demo (lab variables and helpers come from there).
say "rawpoll blast -> rawpoll sink in $B: 4 flows, IMIX sizes, paced at 50 kpps; then 200k frames as fast as the link takes"
ip netns exec "$B" node bin/rawpoll.js sink --port 9 --count 20000 --idle 5 > "$work/sink.out" 2>&1 & sinkpid=$!; pids+=($sinkpid)
sleep 0.8
rawpoll blast -i "$IFA" --to "$IPB" --dport 9 --flows 4 --sport 10000-10003 --size 64,576,1514 --imix 7,4,1 --rate 50kpps --count 20000
wait "$sinkpid" || true
echo "-- sink report:"; sed 's/^/   | /' "$work/sink.out"
rawpoll blast -i "$IFA" --to "$IPB:9" --dst-mac 02:00:00:00:00:99 --count 200000
echo "   (sent to a MAC nobody owns: $B's NIC counted them — rx_packets $(ip netns exec "$B" cat /sys/class/net/$IFB/statistics/rx_packets) — and dropped them)"
