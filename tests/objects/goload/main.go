// goload: objects.bpf.o loaded by cilium/ebpf (LoadCollectionSpec, NewCollection), then its
// maps and global data read and written through the Collection. It prints what it sees in a
// form that does not depend on ids, so that its output under `bpfemu run` as nobody can be
// compared with its output as root on the live kernel. With a second argument PREFIX it pins
// flows and .bss at PREFIX<name> before it exits.
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/cilium/ebpf"
)

func errno(err error) string {
	if err == nil {
		return "ok"
	}
	for _, e := range []error{ebpf.ErrKeyNotExist, ebpf.ErrKeyExist, os.ErrPermission} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return err.Error()
}

// possibleCPUs counts /sys/devices/system/cpu/possible ("0-1"), as cilium/ebpf does inside.
func possibleCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return 1
	}
	var lo, hi int
	if n, _ := fmt.Sscanf(string(b), "%d-%d", &lo, &hi); n == 2 {
		return hi + 1
	}
	return 1
}

func main() {
	spec, err := ebpf.LoadCollectionSpec(os.Args[1])
	if err != nil {
		fmt.Println("spec:", err)
		os.Exit(1)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		fmt.Println("collection:", err)
		os.Exit(1)
	}
	defer coll.Close()
	fmt.Println("loaded")

	names := make([]string, 0, len(coll.Maps))
	for n := range coll.Maps {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := coll.Maps[n]
		info, err := m.Info()
		if err != nil {
			fmt.Printf("map %s: info %v\n", n, err)
			continue
		}
		_, hasID := info.ID()
		fmt.Printf("map %s: name %q type %v key %d value %d entries %d flags %#x id %v\n", n,
			info.Name, info.Type, info.KeySize, info.ValueSize, info.MaxEntries, info.Flags, hasID)
	}
	pnames := make([]string, 0, len(coll.Programs))
	for n := range coll.Programs {
		pnames = append(pnames, n)
	}
	sort.Strings(pnames)
	for _, n := range pnames {
		info, err := coll.Programs[n].Info()
		if err != nil {
			fmt.Printf("prog %s: info %v\n", n, err)
			continue
		}
		ids, _ := info.MapIDs()
		fmt.Printf("prog %s: name %q type %v maps %d\n", n, info.Name, info.Type, len(ids))
	}

	zero, one, two, three := uint32(0), uint32(1), uint32(2), uint32(3)
	var rodata [10]byte
	fmt.Println("rodata lookup:", errno(coll.Maps[".rodata"].Lookup(zero, &rodata)),
		binary.LittleEndian.Uint32(rodata[:4]), string(rodata[4:9]))
	fmt.Println("rodata put:", errno(coll.Maps[".rodata"].Put(zero, rodata)))
	var threshold uint32
	fmt.Println("data lookup:", errno(coll.Maps[".data"].Lookup(zero, &threshold)), threshold)
	fmt.Println("bss put:", errno(coll.Maps[".bss"].Put(zero, uint64(42))))

	flows := coll.Maps["flows"]
	fmt.Println("flows put 1:", errno(flows.Update(one, uint64(100), ebpf.UpdateNoExist)))
	fmt.Println("flows put 1 again:", errno(flows.Update(one, uint64(100), ebpf.UpdateNoExist)))
	fmt.Println("flows put 2:", errno(flows.Put(two, uint64(200))))
	fmt.Println("flows delete 2:", errno(flows.Delete(two)))
	var v uint64
	fmt.Println("flows lookup 2:", errno(flows.Lookup(two, &v)))
	fmt.Println("flows lookup 1:", errno(flows.Lookup(one, &v)), v)

	recent := coll.Maps["recent"]
	for k := uint64(10); k < 13; k++ {
		recent.Put(k, uint32(k*3))
	}
	var k64 uint64
	var v32 uint32
	sum, n := uint64(0), 0
	it := recent.Iterate()
	for it.Next(&k64, &v32) {
		sum += k64 * uint64(v32)
		n++
	}
	fmt.Println("recent:", n, sum, errno(it.Err()))

	stats := coll.Maps["stats"]
	ncpu := possibleCPUs()
	in := make([]uint64, ncpu)
	for i := range in {
		in[i] = uint64(i + 5)
	}
	fmt.Println("stats put:", errno(stats.Put(three, in)))
	var out []uint64
	err = stats.Lookup(three, &out)
	total := uint64(0)
	for i, x := range out {
		total += x - uint64(i)
	}
	fmt.Println("stats lookup:", errno(err), total == uint64(5*ncpu))

	locked := coll.Maps["locked"]
	val := make([]byte, 16)
	binary.LittleEndian.PutUint32(val[0:], 5)
	binary.LittleEndian.PutUint32(val[4:], 0xdeadbeef)
	binary.LittleEndian.PutUint64(val[8:], 77)
	fmt.Println("locked put:", errno(locked.Update(one, val, ebpf.UpdateLock)))
	got := make([]byte, 16)
	err = locked.LookupWithFlags(one, &got, ebpf.LookupLock)
	fmt.Printf("locked lookup: %s %x\n", errno(err), got)

	tailInfo, _ := coll.Programs["tail_target"].Info()
	tailID, _ := tailInfo.ID()
	var progID uint32
	err = coll.Maps["jumps"].Lookup(one, &progID)
	fmt.Println("jumps[1]:", errno(err), ebpf.ProgramID(progID) == tailID)
	innerInfo, _ := coll.Maps["inner_one"].Info()
	innerID, _ := innerInfo.ID()
	var mapID uint32
	err = coll.Maps["outer"].Lookup(two, &mapID)
	fmt.Println("outer[2]:", errno(err), ebpf.MapID(mapID) == innerID)
	fmt.Println("outer[3] = inner_one:", errno(coll.Maps["outer"].Put(three, coll.Maps["inner_one"])))

	if len(os.Args) > 2 {
		fmt.Println("pin flows:", errno(flows.Pin(os.Args[2]+"flows")))
		fmt.Println("pin bss:", errno(coll.Maps[".bss"].Pin(os.Args[2]+"bss")))
	}
}
