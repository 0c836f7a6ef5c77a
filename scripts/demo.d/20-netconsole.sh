# Sourced by scripts/demo (lab variables and helpers come from there).
say "rawpoll netconsole -> rawpoll collect in $B (basic lines, then an extended record split with ncfrag)"
mkdir -p "$work/collect"
ip netns exec "$B" node bin/rawpoll.js collect --dir "$work/collect" --netconsole 6666 > "$work/collect.out" 2>&1 & pids+=($!)
sleep 0.8
printf 'demo: basic netconsole line %s\n' 1 2 3 | rawpoll netconsole -i "$IFA" --to "$IPB"
{ echo "demo: an extended record"; head -c 2500 /dev/zero | tr '\0' 'x'; echo; } |
  rawpoll netconsole -i "$IFA" --to "$IPB" --extended --userdata demo=1 --level warning
sleep 0.5
echo "-- collector events:"; sed 's/^/   | /' "$work/collect.out"
echo "-- $work/collect/netconsole/$IPA.log (the 2500-byte record came in ncfrag pieces, reassembled; shown cut at 140 chars):"
cut -c1-140 "$work/collect/netconsole/$IPA.log" | sed 's/^/   | /'
