#!/bin/sh
# A bpftool (Debian's bpftool 7.1) session for bpfemu's real-client tests: map create of
# HASH, LRU_HASH, PERCPU_HASH and ARRAY pinned under PIN_DIR, then update, lookup, dump,
# -j dump, show, show pinned, getnext, delete, freeze, by pin and by id, and a nested
# `sh -c`. Every command is echoed with PIN_DIR written as PIN, then its output and exit
# status. The map ids in the output are the harness's to rename.
# usage: sh bpftool_script.sh PIN_DIR. With CLIENT_PAUSE set it stops once, while its
# maps are pinned, prints "PAUSE" on stderr and reads a line.
P=$1

bt() {
	echo "\$ bpftool $*" | sed "s#$P#PIN#g"
	out=$(bpftool "$@" 2>&1)
	rc=$?
	[ -n "$out" ] && printf '%s\n' "$out" | sed "s#$P#PIN#g"
	echo "[exit $rc]"
}

K1="key 1 0 0 0"; K2="key 2 0 0 0"; K3="key 3 0 0 0"; K9="key 9 0 0 0"
V="value 0x11 0 0 0 0 0 0 0"; W="value 0x22 0 0 0 0 0 0 0xff"

bt map create "$P/hash" type hash key 4 value 8 entries 16 name bt_hash flags 64
bt map create "$P/lru" type lru_hash key 4 value 8 entries 16 name bt_lru flags 64
bt map create "$P/pcpu" type percpu_hash key 4 value 8 entries 16 name bt_pcpu flags 64
bt map create "$P/array" type array key 4 value 8 entries 4 name bt_array
bt map create "$P/hash" type hash key 4 value 8 entries 16 name bt_again
bt map create "$P/bad" type hash key 0 value 8 entries 16 name bt_bad

for m in hash lru pcpu; do
	bt map update pinned "$P/$m" $K1 $V
	bt map update pinned "$P/$m" $K2 $W noexist
	bt map update pinned "$P/$m" $K3 $V any
	bt map update pinned "$P/$m" $K1 $W noexist
	bt map update pinned "$P/$m" $K9 $W exist
	bt map lookup pinned "$P/$m" $K2
	bt map lookup pinned "$P/$m" $K9
	bt map getnext pinned "$P/$m"
	bt map getnext pinned "$P/$m" $K2
	bt map dump pinned "$P/$m"
	bt -j map dump pinned "$P/$m"
	bt map delete pinned "$P/$m" $K3
	bt map delete pinned "$P/$m" $K3
	bt map dump pinned "$P/$m"
	bt map show pinned "$P/$m"
	bt -j map show pinned "$P/$m"
done

bt map update pinned "$P/array" key 2 0 0 0 $W
bt map update pinned "$P/array" key 4 0 0 0 $W
bt map lookup pinned "$P/array" key 2 0 0 0
bt map getnext pinned "$P/array" key 3 0 0 0
bt map dump pinned "$P/array"
bt -j map dump pinned "$P/array"
bt map delete pinned "$P/array" key 2 0 0 0
bt map freeze pinned "$P/array"
bt map update pinned "$P/array" key 1 0 0 0 $V
bt map show pinned "$P/array"

# by id, as found by show
id=$(bpftool map show pinned "$P/hash" | sed -n 's/^\([0-9]*\):.*/\1/p')
bt map lookup id "$id" $K1
bt map show id "$id"
bt -p map show id "$id"
bt map dump id "$id"
bt map update id "$id" key 5 0 0 0 $V
bt map pin id "$id" "$P/hash_again"
bt map dump pinned "$P/hash_again"
bt map pin id "$id" "$P/hash_again"
bt map show pinned "$P/missing"
bt map lookup id 0 $K1

bt map show
echo "\$ sh -c 'bpftool map lookup ...; bpftool map dump ...'"
sh -c "bpftool map lookup pinned '$P/lru' $K1 && bpftool -j map dump pinned '$P/array'" 2>&1
echo "[exit $?]"

if [ -n "$CLIENT_PAUSE" ]; then
	echo PAUSE >&2
	read -r _
fi
echo done
