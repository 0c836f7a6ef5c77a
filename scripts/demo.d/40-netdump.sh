# Sourced by scripts/demo (lab variables and helpers come from there).
say "rawpoll netdump -> rawpoll netdump-server in $B: a 4 MB 'core', every datagram ACKed"
mkdir -p "$work/crash"
ip netns exec "$B" node bin/rawpoll.js netdump-server --dir "$work/crash" --bind "$IPB" > "$work/netdumpd.out" 2>&1 & pids+=($!)
sleep 0.8
head -c 4000000 /dev/urandom > "$work/vmcore.in"
rawpoll netdump -i "$IFA" --server "$IPB" --file "$work/vmcore.in" --panic "demo panic" --window 64
echo "-- from an address the host does not own ($NET.77; rawpoll answers ARP for it), kernel-style rounds:"
rawpoll netdump -i "$IFA" --server "$IPB" --from "$NET.77" --file "$work/vmcore.in" --panic "second demo"
sleep 0.5
echo "-- server log:"; sed 's/^/   | /' "$work/netdumpd.out"
echo "-- sha256 sent and stored:"
sha256sum "$work/vmcore.in" "$work"/crash/vmcore.* | sed "s|$work/||; s/^/   | /"
echo "-- info.$IPA.0 (the kernel dump header, decoded):"; sed 's/^/   | /' "$work/crash/info.$IPA.0"
